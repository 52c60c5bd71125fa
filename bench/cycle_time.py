"""Synthesis cycle time and shadow validation time, with the rules proposer, on the demo.

Runs ``selfmod run --exit-when-idle`` on the bundled demo (the repository's
``config/selfmod.yaml``, a fresh state directory) until no hot target is left
to try, and reads the daemon's own report: each cycle's wall seconds and the
compute seconds of its phases (record, propose, shadow), and each candidate's
shadow seconds.

The target (median cycle <= 20 s) is checked on the cycles that judged at
least one candidate in a shadow: a cycle that ends at once because no rule
applies is cheap, and counting it would flatter the median. The median over
all cycles is reported next to it.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

from bench._common import (
    RESULTS,
    demo_converged,
    metric,
    progress,
    pyplot,
    result,
    save_figure,
    write_result,
)

NAME = "cycle_time"
TARGET_SECONDS = 20.0
PHASES = ("record", "propose", "shadow")


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _plot(cycles: list[dict[str, Any]], median: float | None, path: os.PathLike[str]) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(8, 4))
    xs = range(len(cycles))
    bottom = [0.0] * len(cycles)
    for phase, colour in zip((*PHASES, "other"), ("tab:blue", "tab:green", "tab:orange",
                                                 "tab:gray"), strict=True):
        if phase == "other":
            heights = [max(0.0, c["seconds"] - sum(c["compute_seconds"].values()))
                       for c in cycles]
        else:
            heights = [c["compute_seconds"].get(phase, 0.0) for c in cycles]
        ax.bar(xs, heights, bottom=bottom, color=colour, label=phase)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.axhline(TARGET_SECONDS, color="red", linestyle="--", label="target median")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"{c['target'].rpartition(':')[2]}\n{c['outcome']}" for c in cycles],
                       rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("seconds")
    title = f"Synthesis cycles on the demo (median of judged cycles {median} s)"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return save_figure(plt, fig, path)


def main() -> int:
    started, load_before = time.monotonic(), os.getloadavg()
    _state, report = demo_converged(NAME)
    cycles = report["cycles"]
    judged = [c for c in cycles if "shadow" in c["compute_seconds"]]
    candidates = [c for c in report["candidates"] if c.get("shadow_seconds") is not None]
    shadow = [c["shadow_seconds"] for c in candidates]
    median_judged = _median([c["seconds"] for c in judged])
    median_all = _median([c["seconds"] for c in cycles])
    phases = {p: _median([c["compute_seconds"][p] for c in cycles if p in c["compute_seconds"]])
              for p in PHASES}
    # where a candidate's shadow time goes: the full child's phases, each child's wall
    shadow_phases = sorted({p for c in candidates for p in c.get("shadow_phases") or {}})
    per_phase = {p: _median([c["shadow_phases"][p] for c in candidates
                             if p in (c.get("shadow_phases") or {})]) for p in shadow_phases}
    RESULTS.mkdir(parents=True, exist_ok=True)
    png = RESULTS / f"{NAME}.png"
    plotted = _plot(cycles, median_judged, png)
    metrics = [
        metric("median_cycle_seconds", median_judged, "s", target=f"<= {TARGET_SECONDS:g}",
               met=median_judged is not None and median_judged <= TARGET_SECONDS,
               cycles=len(judged), over="cycles that judged a candidate"),
        metric("median_cycle_seconds_all", median_all, "s", cycles=len(cycles)),
        metric("median_shadow_seconds_per_candidate", _median(shadow), "s",
               max=round(max(shadow), 3) if shadow else None, candidates=len(shadow)),
        metric("swaps", sum(1 for c in cycles if c["swapped"]), "versions"),
        metric("convergence_seconds", report["wall_seconds"], "s",
               exit_reason=report["exit_reason"], timed_out=report["timed_out"],
               converged=report["exit_reason"].startswith("idle")),
    ]
    details = {
        "median_phase_seconds": phases,
        "median_shadow_phase_seconds": per_phase,
        "cycles": cycles,
        "candidates": [{k: c.get(k) for k in ("target", "origin", "verdict", "stage", "reason",
                                              "speedup", "ci_low", "ci_high", "calls",
                                              "shadow_seconds", "shadow_phases")}
                       for c in report["candidates"]],
        "compute": report["compute"],
        "workload": report["workload"],
        "active": report["active"],
        "png": png.name if plotted else None,
    }
    params = {"command": "selfmod run --config config/selfmod.yaml --exit-when-idle "
                         "--metrics-port 0 (fresh state dir)",
              "proposer": "rules", "daemon_timeout_seconds": 360}
    data = result(NAME, "synthesis cycle and shadow validation time on the demo, rules proposer",
                  metrics, params, details, started=started, load_before=load_before)
    path = write_result(data)
    progress(NAME, f"median judged cycle {median_judged}s ({len(judged)} cycles), median all "
                   f"{median_all}s, median shadow/candidate {_median(shadow)}s -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
