"""The run report: what ``selfmod run --report F`` writes, and ``--exit-when-idle`` prints.

A plain function of what the run did (its cycles, the versions live at the
end, the workload's counters), so the format is read in one place.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from daemon.outcome import CycleReport
from daemon.workload import WorkloadStats

# History of REPORT_FORMAT:
#   1 — first format.
#   2 — ``app``: the hosted app's spec and how it ended (running, returned, failed with the
#       exception's type, message, the app's frame and traceback; refused at start).
REPORT_FORMAT = 2


def run_report(cycles: list[CycleReport], *, started_at: float, finished_at: float,
               exit_reason: str, state_dir: Path, policy: dict[str, Any],
               active: dict[str, str], throughput_before: float | None,
               stats: WorkloadStats | None,
               app: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report of one run: cycles, candidates, compute, active versions, the workload."""
    targets: dict[str, dict[str, Any]] = {}
    for cycle in cycles:
        entry = targets.setdefault(cycle.target, {"target": cycle.target, "cycles": 0,
                                                  "outcomes": [], "share": cycle.share})
        entry["cycles"] += 1
        entry["outcomes"].append(cycle.outcome)
    return {
        "format": REPORT_FORMAT,
        "started_at": started_at,
        "finished_at": finished_at,
        "exit_reason": exit_reason,
        "state_dir": str(state_dir),
        "policy": policy,
        "cycles": [
            {"target": c.target, "share": round(c.share, 4), "outcome": c.outcome,
             "reason": c.reason, "parent": c.parent, "seconds": round(c.seconds, 3),
             "corpus_calls": c.corpus_calls, "swapped": c.swapped,
             "compute_seconds": {k: round(v, 3) for k, v in c.compute_seconds.items()},
             "tokens": c.tokens, "corrections": c.corrections}
            for c in cycles],
        "compute": compute_totals(cycles),
        "targets": list(targets.values()),
        "candidates": [{"target": c.target, **asdict(o)} for c in cycles for o in c.candidates],
        "active": active,
        "app": app,
        "workload": {
            "throughput_before": throughput_before,
            "throughput_after": stats.throughput if stats else None,
            "oracle_checks": stats.oracle_checks if stats else None,
            "oracle_mismatches": stats.oracle_mismatches if stats else None,
        },
    }


def refused_report(*, app: str | None, error: str, at: float) -> dict[str, Any]:
    """The report of a run refused at start (a bad ``--app``, scope or setting): nothing ran."""
    return {"format": REPORT_FORMAT, "started_at": at, "finished_at": at,
            "exit_reason": f"refused: {error}", "cycles": [], "candidates": [], "targets": [],
            "active": {}, "app": {"app": app, "outcome": "refused", "error": error}}


def compute_totals(cycles: list[CycleReport]) -> dict[str, float]:
    """Improvements per unit of compute: the seed's KPI, for the report and the gauge."""
    seconds = sum(sum(c.compute_seconds.values()) for c in cycles)
    tokens = sum(sum(c.tokens.values()) for c in cycles)
    improvements = sum(1 for c in cycles if c.swapped)
    return {"seconds": round(seconds, 3), "tokens": tokens, "improvements": improvements,
            "improvements_per_compute_second": improvements / seconds if seconds else 0.0,
            "seconds_per_improvement": seconds / improvements if improvements else 0.0,
            "tokens_per_improvement": tokens / improvements if improvements else 0.0}


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` to ``path`` whole or not at all (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
