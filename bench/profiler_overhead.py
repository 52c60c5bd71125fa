"""Profiler overhead: the demo's throughput with and without the sampling profiler, paired.

One process hosts the demo as ``selfmod run`` does (the configured seed,
worker threads and oracle rate) on its original code. Blocks of a few seconds
alternate between "profiler off" and "profiler on" (a fresh
:class:`daemon.profiler.Profiler` at the configured rate, with the daemon's
scope); each pair is an off block and an on block next to each other, in
alternating order (off-on, on-off, ...) so that a slow drift of the machine
does not favour either side. Throughput in a block is lines processed over the
block's wall time, from the workload's own counters.

The loss is ``1 - on/off`` per pair; the result is the mean loss with a
bootstrap 95% interval. Because the machine is shared, two quieter estimates
come with it. Lines per CPU second of the whole process (workers and
profiler) take out how much CPU the neighbours left this process in each
block, and still charge the profiler's own CPU time and any slowdown it causes
the workers. And the CPU time one sample costs, times the rate, is the share
of the GIL the profiler takes from the workload.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from typing import Any

from bench._common import (
    CONFIG,
    RESULTS,
    bootstrap_ci,
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
from daemon.profiler import Profiler
from demo.workload import DemoWorkload
from envelope.policy import DEFAULT_POLICY, load_policy

NAME = "profiler_overhead"
TARGET = 0.02
PAIRS = 8
BLOCK_SECONDS = 4.0
WARMUP_SECONDS = 3.0
COST_SAMPLES = 2000


def _block(workload: DemoWorkload, seconds: float, profiler: Profiler | None) -> dict[str, Any]:
    if profiler is not None:
        profiler.start()
    start_items, start, cpu = workload.snapshot().items, time.monotonic(), time.process_time()
    time.sleep(seconds)
    end_items, end = workload.snapshot().items, time.monotonic()
    cpu = time.process_time() - cpu
    samples = 0
    if profiler is not None:
        profiler.stop_and_join()
        samples = profiler.total_samples
    return {"profiler": profiler is not None, "seconds": round(end - start, 3),
            "items": end_items - start_items,
            "throughput": (end_items - start_items) / (end - start), "cpu_seconds": cpu,
            "per_cpu_second": (end_items - start_items) / cpu if cpu > 0 else 0.0,
            "samples": samples}


def sample_cost(profiler: Profiler, n: int) -> float:
    """CPU seconds one sample of the live threads takes (thread CPU time: GIL waits excluded)."""
    me = threading.get_ident()
    before = time.thread_time()
    for _ in range(n):
        profiler.sample(sys._current_frames(), skip=me)
    return (time.thread_time() - before) / n


def _plot(blocks: list[dict[str, Any]], loss: float, path: os.PathLike[str]) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for on, colour, label in ((False, "tab:blue", "profiler off"),
                              (True, "tab:orange", "profiler on")):
        xs = [i for i, b in enumerate(blocks) if b["profiler"] is on]
        ys = [blocks[i]["throughput"] for i in xs]
        ax.bar(xs, ys, color=colour, label=label)
    ax.set_xlabel("block (in run order)")
    ax.set_ylabel("demo throughput (lines/s)")
    ax.set_title(f"Profiler overhead: mean paired loss {loss:+.2%} (target <= {TARGET:.0%})")
    ax.legend(loc="lower right")
    return save_figure(plt, fig, path)


def main() -> int:
    started, load_before = time.monotonic(), os.getloadavg()
    config = load_config(CONFIG)
    policy = load_policy(config.policy) if config.policy is not None else DEFAULT_POLICY
    seed, workers, oracle_every = demo_options(config)
    params = {"pairs": PAIRS, "block_seconds": BLOCK_SECONDS, "warmup_seconds": WARMUP_SECONDS,
              "hz": config.profiler.hz, "window_seconds": config.profiler.window_seconds,
              "scope": list(policy.scope.include), "workers": workers,
              "oracle_every": oracle_every, "seed": seed,
              "order": "pairs alternate off-on / on-off", "cost_samples": COST_SAMPLES}

    def new_profiler() -> Profiler:
        return Profiler(policy.in_scope, hz=config.profiler.hz,
                        window_seconds=config.profiler.window_seconds)

    workload = DemoWorkload(seed=seed, workers=workers, oracle_every=oracle_every)
    workload.start()
    blocks: list[dict[str, Any]] = []
    try:
        progress(NAME, f"demo started ({workers} workers); warming up")
        time.sleep(WARMUP_SECONDS)
        for pair in range(PAIRS):
            order = (False, True) if pair % 2 == 0 else (True, False)
            for on in order:
                blocks.append(_block(workload, BLOCK_SECONDS, new_profiler() if on else None))
            off, on_ = sorted(blocks[-2:], key=lambda b: b["profiler"])
            progress(NAME, f"pair {pair + 1}/{PAIRS}: off {off['throughput']:.0f}/s, "
                           f"on {on_['throughput']:.0f}/s ({on_['samples']} samples)")
        cost = sample_cost(new_profiler(), COST_SAMPLES)
        stats = workload.snapshot()
    finally:
        workload.stop()
        workload.join(10.0)

    offs = [b["throughput"] for b in blocks if not b["profiler"]]
    ons = [b["throughput"] for b in blocks if b["profiler"]]
    losses = [1.0 - r for r in paired_ratios(offs, ons)]
    loss = statistics.fmean(losses)
    low, high = bootstrap_ci(losses)
    cpu_losses = [1.0 - r for r in paired_ratios(
        [b["per_cpu_second"] for b in blocks if not b["profiler"]],
        [b["per_cpu_second"] for b in blocks if b["profiler"]])]
    cpu_loss = statistics.fmean(cpu_losses)
    cpu_low, cpu_high = bootstrap_ci(cpu_losses)
    cost_share = cost * config.profiler.hz
    png = RESULTS / f"{NAME}.png"
    RESULTS.mkdir(parents=True, exist_ok=True)
    plotted = _plot(blocks, loss, png)
    metrics = [
        metric("throughput_loss", round(loss, 5), "ratio", target=f"<= {TARGET}",
               met=loss <= TARGET, ci95=[round(low, 5), round(high, 5)],
               median=round(statistics.median(losses), 5)),
        metric("throughput_loss_per_cpu_second", round(cpu_loss, 5), "ratio",
               target=f"<= {TARGET}", met=cpu_loss <= TARGET,
               ci95=[round(cpu_low, 5), round(cpu_high, 5)],
               note="lines per CPU second of the process: robust to neighbours' load"),
        metric("sample_cpu_share", round(cost_share, 5), "ratio",
               cost_per_sample_us=round(cost * 1e6, 2),
               note="CPU seconds per sample x hz: the GIL share sampling takes"),
    ]
    details = {"blocks": blocks, "pair_losses": [round(x, 5) for x in losses],
               "pair_losses_per_cpu_second": [round(x, 5) for x in cpu_losses],
               "throughput_off_mean": statistics.fmean(offs),
               "throughput_on_mean": statistics.fmean(ons),
               "oracle_checks": stats.oracle_checks, "oracle_mismatches": stats.mismatches,
               "png": png.name if plotted else None}
    data = result(NAME, "demo throughput with vs without the sampling profiler, paired blocks",
                  metrics, params, details, started=started, load_before=load_before)
    path = write_result(data)
    progress(NAME, f"loss {loss:+.2%} (95% CI {low:+.2%}..{high:+.2%}), per CPU second "
                   f"{cpu_loss:+.2%} ({cpu_low:+.2%}..{cpu_high:+.2%}), "
                   f"{cost * 1e6:.0f} us/sample = {cost_share:.3%} at {config.profiler.hz:g} Hz "
                   f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
