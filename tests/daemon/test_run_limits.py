"""`selfmod run` limits: --max-cycles 0 runs no cycle; an operator's override is on the record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.daemon.live import LiveDaemon

pytestmark = pytest.mark.slow


def test_max_cycles_zero_starts_restores_and_stops_without_a_cycle(tmp_path: Path) -> None:
    """With --max-cycles 0 the daemon starts, runs no cycle and exits 0 with the reason."""
    state, report = tmp_path / "state", tmp_path / "report.json"
    daemon = LiveDaemon(["--state-dir", str(state), "--metrics-port", "0", "--max-cycles", "0",
                         "--report", str(report), "--allow-policy-downgrade"], tmp_path)
    assert daemon.finish(60) == 0, daemon.tail()
    assert daemon.events("cycle_started") == []
    run = json.loads(report.read_text())
    assert run["cycles"] == [] and run["exit_reason"] == "max cycles (0) reached"
    audit = [json.loads(line) for line in (state / "audit.log").read_text().splitlines()]
    started = next(r["body"] for r in audit if r["kind"] == "daemon_started")
    assert started["allow_policy_downgrade"] is True
