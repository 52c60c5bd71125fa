"""End-to-end demo throughput after convergence against before, with the oracle watching.

First the daemon runs on the demo until no hot target is left to try (the
same batch run as :mod:`bench.cycle_time`, built once per ``make bench``).
Then, in this one process, the demo runs while the versions the daemon
accepted (read from its state directory, installed with the daemon's own
:class:`daemon.swap.SwapManager`) are swapped in and out: blocks of a few
seconds alternate between the original code and the converged code, in pairs
of alternating order (original-converged, converged-original, ...). The speedup
is the mean of the per-pair ratios of lines per second, with a bootstrap 95%
interval.

Two configurations are measured: the demo as :class:`DemoWorkload` ships (one
worker, the oracle on every 20th batch; the headline number) and the demo as
``config/selfmod.yaml`` hosts it (two workers, the oracle on every 5th batch).
The live oracle runs the *original* code inline, so the more often it checks,
the more of the work it keeps unoptimised: at every 5th batch it caps what any
optimisation of the live code can show.

Correctness: the workload's oracle mismatches during the converged blocks must
be zero, and afterwards every pool batch of the run's seed and of three other
seeds goes through the converged code and the frozen oracle, which must agree.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

from bench._common import (
    CONFIG,
    RESULTS,
    Converged,
    bootstrap_ci,
    demo_converged,
    demo_options,
    metric,
    paired_ratios,
    progress,
    pyplot,
    result,
    save_figure,
    write_result,
)
from daemon.config import load_config
from demo import logstats, oracle
from demo.workload import (
    DEFAULT_ORACLE_EVERY,
    DEFAULT_POOL_SIZE,
    DEFAULT_WORKERS,
    DemoWorkload,
    make_pool,
)

NAME = "throughput"
TARGET_RATIO = 3.0
PAIRS = 5
BLOCK_SECONDS = 3.0
SETTLE_SECONDS = 0.3  # after a swap, let the batch in flight on the other code finish
WARMUP_SECONDS = 2.0
EXTRA_SEEDS = 3


def measure(converged: Converged, *, workers: int, oracle_every: int, seed: int,
            label: str) -> dict[str, Any]:
    """Paired blocks of original and converged code in one running demo."""
    workload = DemoWorkload(seed=seed, workers=workers, oracle_every=oracle_every)
    workload.start()
    blocks: list[dict[str, Any]] = []
    try:
        time.sleep(WARMUP_SECONDS)
        for pair in range(PAIRS):
            order = (False, True) if pair % 2 == 0 else (True, False)
            for optimised in order:
                if optimised:
                    converged.install()
                else:
                    converged.rollback()
                time.sleep(SETTLE_SECONDS)
                before, t0 = workload.snapshot(), time.monotonic()
                time.sleep(BLOCK_SECONDS)
                after, t1 = workload.snapshot(), time.monotonic()
                blocks.append({"optimised": optimised, "seconds": round(t1 - t0, 3),
                               "throughput": (after.items - before.items) / (t1 - t0),
                               "oracle_checks": after.oracle_checks - before.oracle_checks,
                               "mismatches": after.mismatches - before.mismatches,
                               "errors": after.errors - before.errors})
            original, optimised_ = sorted(blocks[-2:], key=lambda b: b["optimised"])
            progress(NAME, f"{label} pair {pair + 1}/{PAIRS}: original "
                           f"{original['throughput']:.0f}/s, converged "
                           f"{optimised_['throughput']:.0f}/s")
    finally:
        converged.rollback()
        workload.stop()
        workload.join(10.0)
    final = workload.snapshot()
    before_ = [b["throughput"] for b in blocks if not b["optimised"]]
    after_ = [b["throughput"] for b in blocks if b["optimised"]]
    ratios = paired_ratios(before_, after_)
    low, high = bootstrap_ci(ratios)
    converged_blocks = [b for b in blocks if b["optimised"]]
    return {"workers": workers, "oracle_every": oracle_every, "seed": seed,
            "ratio": statistics.fmean(ratios), "ci95": [low, high], "pair_ratios": ratios,
            "throughput_before": statistics.fmean(before_),
            "throughput_after": statistics.fmean(after_),
            "mismatches_converged": sum(b["mismatches"] for b in converged_blocks),
            "oracle_checks_converged": sum(b["oracle_checks"] for b in converged_blocks),
            "errors_converged": sum(b["errors"] for b in converged_blocks),
            "mismatches_total": final.mismatches, "oracle_checks_total": final.oracle_checks,
            "blocks": blocks}


def recheck(converged: Converged, seeds: list[int]) -> dict[str, Any]:
    """Every pool batch of ``seeds`` through the converged code and the frozen oracle."""
    checked, differing = 0, []
    converged.install()
    try:
        for seed in seeds:
            for n, batch in enumerate(make_pool(seed, DEFAULT_POOL_SIZE, 2500)):
                checked += 1
                if logstats.process_batch(list(batch)) != oracle.oracle_process_batch(
                        list(batch)):
                    differing.append({"seed": seed, "batch": n,
                                      "function": oracle.locate_mismatch(logstats,
                                                                         list(batch))[0]})
    finally:
        converged.rollback()
    return {"seeds": seeds, "batches": checked, "mismatches": len(differing),
            "differing": differing[:10]}


def _plot(runs: dict[str, dict[str, Any]], path: os.PathLike[str]) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.5), squeeze=False)
    for ax, (label, run) in zip(axes[0], runs.items(), strict=True):
        blocks = run["blocks"]
        for opt, colour, name in ((False, "tab:gray", "original"),
                                  (True, "tab:green", "converged")):
            xs = [i for i, b in enumerate(blocks) if b["optimised"] is opt]
            ax.bar(xs, [blocks[i]["throughput"] for i in xs], color=colour, label=name)
        ax.set_title(f"{label}: {run['ratio']:.2f}x ({run['workers']} worker(s), "
                     f"oracle every {run['oracle_every']})", fontsize=9)
        ax.set_xlabel("block (in run order)")
        ax.set_ylabel("lines/s")
        ax.legend(fontsize=8)
    return save_figure(plt, fig, path)


def main() -> int:
    started, load_before = time.monotonic(), os.getloadavg()
    config = load_config(CONFIG)
    state, report = demo_converged(NAME)
    converged = Converged(state)
    progress(NAME, f"{len(converged.codes)} converged versions: {sorted(converged.codes)}")
    seed, workers, oracle_every = demo_options(config)
    runs = {
        "demo": measure(converged, workers=DEFAULT_WORKERS, oracle_every=DEFAULT_ORACLE_EVERY,
                        seed=seed, label="demo defaults"),
        "daemon_config": measure(converged, workers=workers,
                                 oracle_every=oracle_every, seed=seed,
                                 label="daemon config"),
    }
    progress(NAME, "rechecking every pool batch of four seeds against the oracle")
    check = recheck(converged, [seed, *range(seed + 1, seed + 1 + EXTRA_SEEDS)])
    mismatches = sum(r["mismatches_total"] for r in runs.values()) + check["mismatches"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    png = RESULTS / f"{NAME}.png"
    plotted = _plot(runs, png)
    metrics = []
    for label, run in runs.items():
        name = "speedup" if label == "demo" else f"speedup_{label}"
        metrics.append(metric(name, round(run["ratio"], 3), "x", target=f">= {TARGET_RATIO:g}",
                              met=run["ratio"] >= TARGET_RATIO,
                              ci95=[round(x, 3) for x in run["ci95"]],
                              workers=run["workers"], oracle_every=run["oracle_every"],
                              converged=report["exit_reason"].startswith("idle")))
    metrics.append(metric("oracle_mismatches", mismatches, "count", target="== 0",
                          met=mismatches == 0,
                          live_checks=sum(r["oracle_checks_total"] for r in runs.values()),
                          recheck_batches=check["batches"]))
    details = {"runs": runs, "recheck": check, "versions": {t: v for t, (v, _) in
                                                            converged.codes.items()},
               "skipped": converged.skipped,
               "daemon_report": {"exit_reason": report["exit_reason"],
                                 "workload": report["workload"],
                                 "wall_seconds": report["wall_seconds"]},
               "png": png.name if plotted else None}
    params = {"pairs": PAIRS, "block_seconds": BLOCK_SECONDS, "settle_seconds": SETTLE_SECONDS,
              "warmup_seconds": WARMUP_SECONDS, "seed": seed,
              "order": "pairs alternate original-converged / converged-original"}
    data = result(NAME, "demo throughput with the converged versions vs the original code, "
                        "paired, same process", metrics, params, details, started=started,
                  load_before=load_before)
    path = write_result(data)
    progress(NAME, "; ".join(f"{k} {r['ratio']:.2f}x" for k, r in runs.items())
             + f"; oracle mismatches {mismatches} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
