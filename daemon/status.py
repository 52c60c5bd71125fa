"""A read-only snapshot of a running daemon: what ``selfmod status`` shows of it.

The daemon takes one when asked (:meth:`daemon.lifecycle.Daemon.status`); the
control routes (:mod:`daemon.operator`) answer from it and never see the daemon
itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StatusSnapshot:
    """The daemon's state at one instant, as plain values."""

    state_dir: str
    paused: bool
    halted: str  # why synthesis is halted (integrity), "" while it runs
    budget_halt: str  # the budget that forbids a cycle now, "" when none does
    isolation: dict[str, bool] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)  # version, sha256, path
    cycles: int = 0
    last_cycle: dict[str, Any] | None = None
    in_flight: dict[str, Any] | None = None  # the cycle running now: target, stage, seconds
    workload: dict[str, Any] | None = None  # the app's counters, when it reports any
    app: dict[str, Any] | None = None  # the app and its outcome: running, returned, failed
    uptime_seconds: float = 0.0
    audit: str = "unanchored"  # or "anchored: last checkpoint at seq N"
