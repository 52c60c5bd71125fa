"""What the proof-coverage steps add to the gate: kills with and without them, and their time.

The mutation benchmark judges every sampled candidate twice: under the policy
as it is (``with``: coverage gate, symbolic diff, state watch) and under
:func:`bench._gate.without_new_steps` (``without``). Each judged candidate is
one row of ``details.judged``::

    {"set": "existing" | "rare" | "control", "target": ..., "operator": ...,
     "description": ..., "with": {"caught_by": ..., "stage": ..., "reason": ...,
     "detail": ..., "shadow_seconds": ...}, "without": {...}}

:func:`score_steps` turns the rows into metrics and tallies; it reads nothing
else, so ``--rescore`` recomputes them from a result file.

``existing`` are the operator mutants of :mod:`bench._mutants`, ``rare`` the
rare-branch mutants of :mod:`bench._rare`, ``control`` the rules' own
(correct, faster) rewrites: a control turned away by a step is a correct
candidate lost, and the controls show the time the steps cost a candidate that
passes them all, which is where the symbolic diff uses its whole budget.
"""

from __future__ import annotations

import collections
import statistics
from typing import Any

from bench._common import metric
from bench._gate import Verdict

CONFIGS = ("with", "without")
# caught_by values only the proof-coverage steps produce
NEW_STEPS = ("unproven", "counterexample", "stateful")
SETS = ("existing", "rare")
DETAIL_CHARS = 300


def outcome(caught_by: str) -> str:
    """``killed``, ``not_faster`` or ``accepted``, from a verdict's ``caught_by``.

    ``caught_by`` is what per-target results record (``nothing`` for an accepted
    mutant), so a result file can be rescored from it.
    """
    if caught_by in ("", "nothing"):
        return "accepted"
    if caught_by == "speed":  # the acceptance stage: the shadow found no difference
        return "not_faster"
    return "killed"


def verdict_row(verdict: Verdict) -> dict[str, Any]:
    """One configuration's verdict on one candidate, as ``details.judged`` keeps it."""
    return {"caught_by": verdict.caught_by or "nothing", "stage": verdict.stage,
            "reason": verdict.reason, "detail": verdict.detail[:DETAIL_CHARS],
            "shadow_seconds": round(verdict.report.duration, 3)
            if verdict.report is not None else None}


def score_steps(judged: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Metrics and tallies of the steps' effect; only rows judged both ways count."""
    both = [row for row in judged if all(config in row for config in CONFIGS)]
    metrics: list[dict[str, Any]] = []
    tallies: dict[str, Any] = {}
    for name in SETS:
        rows = [row for row in both if row["set"] == name]
        shares = {config: _kill_share(rows, config) for config in CONFIGS}
        tallies[name] = {
            "tried": len(rows),
            **{f"caught_by_{config}": _caught(rows, config) for config in CONFIGS},
            "killed_only_with_new_steps": [_brief(row) for row in rows
                                           if _killed(row, "with") and
                                           not _killed(row, "without")],
            "killed_only_without_new_steps": [_brief(row) for row in rows
                                              if _killed(row, "without") and
                                              not _killed(row, "with")],
            "survivors_with_new_steps": [_brief(row) for row in rows
                                         if not _killed(row, "with")],
        }
        if name == "existing":
            metrics.append(metric("kill_score_without_new_steps", shares["without"], "ratio",
                                  with_new_steps=shares["with"], tried=len(rows),
                                  note="the same sampled mutants under the policy with the "
                                       "coverage gate, symbolic diff and state watch off"))
        else:
            metrics.append(metric("rare_kill_score", shares["with"], "ratio", tried=len(rows),
                                  note="rare-branch mutants (wrong only on inputs the "
                                       "recorded calls never or rarely meet) killed by the "
                                       "gate with the proof-coverage steps"))
            metrics.append(metric("rare_kill_score_without_new_steps", shares["without"],
                                  "ratio", tried=len(rows),
                                  note="the same rare-branch mutants with the coverage gate, "
                                       "symbolic diff and state watch off"))
        tallies[name]["kill_share"] = shares
    controls = [row for row in both if row["set"] == "control"]
    tallies["control"] = {
        "tried": len(controls),
        "rows": [_brief(row) for row in controls],
        "rejected_with_new_steps": [_brief(row) for row in controls
                                    if row["with"]["caught_by"] not in ("nothing", "speed")],
    }
    metrics.append(metric(
        "controls_rejected_by_new_steps",
        sum(row["with"]["caught_by"] in NEW_STEPS for row in controls), "candidates",
        tried=len(controls),
        note="the rules' own correct rewrites turned away by a proof-coverage step"))
    times = _time_cost(both, controls)
    metrics.extend(times.pop("metrics"))
    tallies["shadow_seconds"] = times
    return metrics, tallies


def _time_cost(rows: list[dict[str, Any]], controls: list[dict[str, Any]]) -> dict[str, Any]:
    """Median shadow seconds per candidate, with and without the steps, paired."""
    def pairs(items: list[dict[str, Any]]) -> list[tuple[float, float]]:
        return [(row["with"]["shadow_seconds"], row["without"]["shadow_seconds"])
                for row in items if row["with"]["shadow_seconds"] is not None
                and row["without"]["shadow_seconds"] is not None]

    every, passing = pairs(rows), pairs(controls)
    out: dict[str, Any] = {"all": _medians(every), "controls": _medians(passing)}
    note = ("sandbox wall seconds per candidate (every child: replays, property checks, "
            "benchmark and, with the steps, the symbolic diff); coverage is measured in both "
            "configurations, so its tracer's cost is not in the difference")
    out["metrics"] = [
        metric("shadow_seconds_added_by_new_steps", out["all"]["median_added"], "s",
               median_with=out["all"]["median_with"],
               median_without=out["all"]["median_without"], candidates=len(every),
               over="every sampled candidate that reached the shadow in both", note=note),
        metric("shadow_seconds_added_by_new_steps_passing", out["controls"]["median_added"],
               "s", median_with=out["controls"]["median_with"],
               median_without=out["controls"]["median_without"], candidates=len(passing),
               over="the rules' rewrites (controls), which pass every check: the cost for a "
                    "candidate that can go live", note=note),
    ]
    return out


def _medians(pairs: list[tuple[float, float]]) -> dict[str, float | int | None]:
    if not pairs:
        return {"median_with": None, "median_without": None, "median_added": None, "n": 0}
    return {"median_with": round(statistics.median(w for w, _ in pairs), 3),
            "median_without": round(statistics.median(o for _, o in pairs), 3),
            "median_added": round(statistics.median(w - o for w, o in pairs), 3),
            "n": len(pairs)}


def _killed(row: dict[str, Any], config: str) -> bool:
    return outcome(row[config]["caught_by"]) == "killed"


def _kill_share(rows: list[dict[str, Any]], config: str) -> float | None:
    return round(sum(_killed(row, config) for row in rows) / len(rows), 4) if rows else None


def _caught(rows: list[dict[str, Any]], config: str) -> dict[str, int]:
    return dict(collections.Counter(row[config]["caught_by"] for row in rows).most_common())


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {"target": row["target"].partition(":")[2], "description": row["description"],
            **{config: row[config]["caught_by"] for config in CONFIGS}}
