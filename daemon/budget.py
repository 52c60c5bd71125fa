"""Synthesis budgets from the policy: whether a cycle may start, and when a target may retry.

The decisions are pure functions of numbers and a clock reading, so they are tested
without a daemon; :class:`CycleWindow` only keeps the start times they look at, and
:class:`daemon.selection.Selection` the rest of the state.
How each of the policy's ``budgets`` is met:

- ``cycles_per_hour``: a sliding window of the last hour's cycle start times (the
  daemon's monotonic clock). While it holds that many, no cycle starts, the
  ``selfmod_synthesis_halted`` gauge is 1 and ``selfmod status`` names the
  budget; a cycle may start again once the oldest start leaves the window. 0 halts
  synthesis for good (until the policy changes); the workload keeps running.
- ``cooldown_seconds``: a target whose cycle was rejected is not picked again until
  that long after the rejection (:func:`cooldown_until`, :func:`cooling_down`).
  A policy reload clears every cool-down, so a new value applies at once.
- ``active_patches``: checked just before a swap, by the cycle and by an operator's
  approval alike (``daemon.rollout``).
- ``parallel_shadows``: met by construction. The daemon runs one cycle at a time,
  and a cycle judges its candidates one after the other, each in one shadow
  process at a time (the second hash seed runs after the first); so at most one
  shadow runs, whatever the value. A value above 1 is valid and changes nothing.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

HOUR: Final = 3600.0


@dataclass(frozen=True)
class Halt:
    """Synthesis may not start a cycle now; ``until`` is when it may (``inf``: not by waiting)."""

    reason: str
    until: float


def cycle_halt(starts: Iterable[float], now: float, per_hour: int,
               window: float = HOUR) -> Halt | None:
    """Whether ``budgets.cycles_per_hour`` forbids starting a cycle at ``now``.

    ``starts`` are earlier cycle start times on the same clock; only those within
    ``window`` seconds before ``now`` count.
    """
    if per_hour <= 0:
        return Halt("budget: budgets.cycles_per_hour is 0, synthesis is off", math.inf)
    recent = sorted(t for t in starts if now - window < t <= now)
    if len(recent) < per_hour:
        return None
    until = recent[len(recent) - per_hour] + window
    return Halt(f"budget: {len(recent)} cycles in the last hour reached "
                f"budgets.cycles_per_hour ({per_hour}); the next may start in "
                f"{until - now:.0f} s", until)


def cooldown_until(rejected_at: float, cooldown_seconds: float) -> float:
    """When a target rejected at ``rejected_at`` may be picked again."""
    return rejected_at + cooldown_seconds


def cooling_down(until: float | None, now: float) -> bool:
    """Whether a target whose cool-down ends at ``until`` (None: never rejected) must wait."""
    return until is not None and now < until


class CycleWindow:
    """The start times of the cycles of the last ``window`` seconds."""

    def __init__(self, window: float = HOUR) -> None:
        self.window = window
        self._starts: deque[float] = deque()

    def record(self, now: float) -> None:
        """Count a cycle that starts at ``now``."""
        self._starts.append(now)

    def halt(self, now: float, per_hour: int) -> Halt | None:
        """Whether a cycle may start at ``now`` under ``per_hour`` (see :func:`cycle_halt`)."""
        while self._starts and self._starts[0] <= now - self.window:
            self._starts.popleft()
        return cycle_halt(self._starts, now, per_hour, self.window)
