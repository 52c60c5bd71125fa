"""``python -m bench.aa``: how often the gate takes the original, against itself, for a speedup.

An A/A trial puts a demo target's own source through the real shadow as its
candidate (same corpus, same jail, same paired benchmark the cycle runs) and
asks :func:`invariants.accept.decide` whether it is faster. Any acceptance is
a false accept. Each shadow report is judged at the policy's minimum speedup
(1.05) and at 1.0, the bare "faster at all" threshold whose nominal false-accept
rate is the interval's one-sided 2.5 %.

- ``false_accept_rate_1.05``: target at most 0.05 (the issue's bound).
- ``false_accept_rate_1.0``: reported with the same bound.

Trials cycle through the demo targets and run one at a time, as the daemon runs
its shadows (``budgets.parallel_shadows: 1``), while the demo workload keeps
running, so the timings see the load a live daemon's shadows see. Property
checks are off in these trials (``examples: 0``): they run before the
benchmark and have no bearing on the timings, and leaving them out buys more
trials in the time. The rate comes with a Wilson 95 % interval over the trials.
Each trial keeps its benchmark timings, so that a change to the acceptance
statistics can be judged on the same shadow reports without a rerun.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from scipy import stats

from bench._common import metric, progress, result, workdir, write_result
from bench._gate import Gate, default_policy, demo_targets, record_demo_corpora
from demo.workload import DemoWorkload
from invariants.targets import original_source

NAME = "aa"
BOUND = 0.05
THRESHOLDS = (1.05, 1.0)


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.aa")
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--budget-seconds", type=float, default=300.0,
                        help="stop starting trials after this long")
    parser.add_argument("--batch-size", type=int, default=2500)
    parser.add_argument("--pool-size", type=int, default=8)
    parser.add_argument("--no-workload", action="store_true",
                        help="run the trials on an otherwise idle demo (no live workload)")
    return parser.parse_args(argv)


def wilson(hits: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (``[0, 1]`` with no trials)."""
    if n == 0:
        return 0.0, 1.0
    interval = stats.binomtest(hits, n).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)


def main(argv: list[str] | None = None) -> int:
    options = _options(argv)
    started, load_before = time.monotonic(), os.getloadavg()
    policy = default_policy()
    work = Path(tempfile.mkdtemp(prefix="aa-", dir=workdir()))
    (work / "shadows").mkdir()
    corpora = record_demo_corpora(NAME, work / "corpus", policy, batch_size=options.batch_size,
                                  pool_size=options.pool_size)
    targets = [t for t in demo_targets() if len(corpora[t].records) >= policy.acceptance.min_calls]
    originals = {target: original_source(fn) for target, fn in demo_targets().items()}
    gate = Gate(policy, work / "corpus", work / "shadows", examples=0)
    workload = None if options.no_workload else DemoWorkload(
        seed=1, batch_size=options.batch_size, pool_size=options.pool_size, oracle_every=10**9)
    trials: list[dict[str, Any]] = []
    deadline = started + options.budget_seconds
    if workload is not None:
        workload.start()
    try:
        for n in range(options.trials):
            if time.monotonic() > deadline:
                break
            target = targets[n % len(targets)]
            report = gate.shadow(target, originals[target], originals[target])
            trial: dict[str, Any] = {"target": target, "status": report.status,
                                     "pairs": len(report.original_times),
                                     "original_times": list(report.original_times),
                                     "candidate_times": list(report.candidate_times)}
            for threshold in THRESHOLDS:
                verdict = gate.decide(report, threshold)
                trial[f"accepted_{threshold}"] = not verdict.rejected
                trial[f"verdict_{threshold}"] = verdict.reason
                trial[f"detail_{threshold}"] = verdict.detail.partition(";")[0][:300]
            trials.append(trial)
            shown = trial["detail_1.0"] or trial["verdict_1.0"]
            progress(NAME, f"[{len(trials)}/{options.trials}] {target.partition(':')[2]}: "
                           f"{shown[:100]}"
                           + ("  FALSE ACCEPT at 1.05" if trial["accepted_1.05"] else
                              "  accepted at 1.0" if trial["accepted_1.0"] else ""))
    finally:
        if workload is not None:
            workload.stop()
            workload.join(10)
    data = _result(options, trials, started, load_before)
    path = write_result(data)
    progress(NAME, "; ".join(f"{m['metric']} {m['value']}" for m in data["metrics"])
             + f"; wrote {path}")
    return 0


def _result(options: argparse.Namespace, trials: list[dict[str, Any]], started: float,
            load_before: tuple[float, float, float]) -> dict[str, Any]:
    usable = [t for t in trials if t["status"] == "ok"]
    metrics = []
    for threshold in THRESHOLDS:
        hits = sum(t[f"accepted_{threshold}"] for t in usable)
        rate = round(hits / len(usable), 4) if usable else None
        low, high = wilson(hits, len(usable))
        metrics.append(metric(f"false_accept_rate_{threshold}", rate, "ratio",
                              target=f"<= {BOUND}", met=rate is not None and rate <= BOUND,
                              false_accepts=hits, trials=len(usable),
                              ci95=[round(low, 4), round(high, 4)]))
    parameters = {"trials_requested": options.trials, "trials_run": len(trials),
                  "trials_usable": len(usable), "stopped_early": len(trials) < options.trials,
                  "budget_seconds": options.budget_seconds,
                  "live_workload": not options.no_workload,
                  "demo_batch_size": options.batch_size, "thresholds": list(THRESHOLDS),
                  "policy": "config/envelope.yaml", "property_examples": 0}
    return result(NAME, "The original against itself through the real shadow and decide",
                  metrics, parameters, {"trials": trials}, started=started,
                  load_before=load_before)


if __name__ == "__main__":
    raise SystemExit(main())
