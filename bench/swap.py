"""Swap pause, canary probe overhead, and detect-to-rollback time of planted faulty versions.

Three measurements, in one process:

- **swap pause** — the demo workload runs on two worker threads while its hot
  target ``dedupe_sessions`` is swapped to an equivalent version and rolled back,
  5,000 times; the pause is what :class:`daemon.swap.SwapManager` reports for
  each install (the time the ``__code__`` assignment holds the swap lock, a GIL
  hand-off included when one lands there). The demo's oracle and worker errors
  show that no call failed or went wrong meanwhile.
- **probe overhead** — the time one call gains under the canary's probe
  (:class:`daemon.canary.Watch`), without and with a comparison against the
  previous code, on a small function called in a tight loop.
- **detect-to-rollback** — two threads call a target at a paced total of 300
  calls per second; a faulty version is installed directly (as if it had
  slipped past the shadow) and :class:`daemon.canary.Canary` watches it. The
  time is the ``detect_seconds`` of the ``rolled_back`` event: from the install
  to the original code being back. Faults: wrong on 5% of inputs (a pure
  target: caught by comparison) and three times slower (caught by latency).
  The wrong-on-5% fault runs under the default policy (compare 10% of 200
  calls, so roughly one run in three lets it through: the escape rate is
  reported) and with every call compared.

Writes ``bench/results/swap.json``. Run with ``python -m bench.swap``.
"""

from __future__ import annotations

import dataclasses
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import metric, progress, result, write_result
from daemon import events as ev
from daemon.canary import Canary, CanaryLimits, Passed, Regressed, Watch
from daemon.ledger import Ledger
from daemon.swap import SwapManager
from daemon.synthesis.base import Candidate
from envelope.policy import DEFAULT_POLICY
from invariants.targets import sha256_text
from snapshots import Snapshots
from tests.daemon.fixtures import canary_targets
from tests.daemon.fixtures.canary_targets import THREE_TIMES_SLOWER, WRONG_ON_FIVE_PERCENT

NAME = "swap"
DEMO_TARGET = "demo.logstats:dedupe_sessions"
# The canary tests' targets and planted faulty versions, measured here as they are tested.
CHECKSUM = f"{canary_targets.__name__}:checksum"
WEIGH = f"{canary_targets.__name__}:weigh"
SWAP_PAIRS = 5000
CALLS_PER_SECOND = 300.0  # the issue asks for at least 200
TRIALS = {"wrong_5pct_default": 12, "wrong_5pct_compare_all": 8, "slower_3x": 8}
OVERHEAD_CALLS = 100_000


# -- swap pause ---------------------------------------------------------------------------


def swap_pause() -> dict[str, Any]:
    """Install and roll back the demo's hot target under its own two-thread workload."""
    from demo.workload import DemoWorkload

    swapper = SwapManager()
    workload = DemoWorkload(seed=1, workers=2, oracle_every=5, on_mismatch=lambda *_: None)
    code = swapper.compile(DEMO_TARGET, swapper.original_source(DEMO_TARGET), "bench")
    workload.start()
    pauses: list[float] = []
    try:
        time.sleep(2.0)  # the workers are busy before the first swap
        before = workload.snapshot()
        started = time.monotonic()
        for _ in range(SWAP_PAIRS):
            pauses.append(swapper.install(DEMO_TARGET, "bench", code).pause_seconds)
            swapper.rollback(DEMO_TARGET)
            time.sleep(0)  # let the workers run between pairs, as a real swap would
        seconds = time.monotonic() - started
        after = workload.snapshot()
    finally:
        workload.stop()
        workload.join(10)
        swapper.rollback_all()
    return {"pauses": pauses, "seconds": seconds, "items": after.items - before.items,
            "errors": after.errors - before.errors,
            "oracle_checks": after.oracle_checks - before.oracle_checks,
            "oracle_mismatches": after.mismatches - before.mismatches}


# -- probe overhead -------------------------------------------------------------------------


def _per_call(func: Callable[[list[int]], int], values: list[int]) -> float:
    started = time.perf_counter()
    for _ in range(OVERHEAD_CALLS):
        func(values)
    return (time.perf_counter() - started) / OVERHEAD_CALLS


def probe_overhead() -> dict[str, float]:
    """Seconds one call of ``checksum`` gains under the canary's probe (best of 5 rounds)."""
    swapper = SwapManager()
    func = swapper.function(CHECKSUM)
    values = list(range(20))
    control = swapper.function(WEIGH)  # same computation, a different function object
    rounds: dict[str, list[float]] = {"bare": [], "watched": [], "compared_10pct": []}
    for _ in range(5):
        rounds["bare"].append(_per_call(func, values))
        for label, watch in (("watched", Watch(10**9)),
                             ("compared_10pct", Watch(10**9, control=control, sample=0.1,
                                                      rng=random.Random(1)))):
            probe = swapper.probe(CHECKSUM, watch)
            probe.install()
            try:
                rounds[label].append(_per_call(func, values))
            finally:
                probe.remove()
    best = {label: min(times) for label, times in rounds.items()}
    return {"bare_seconds": best["bare"],
            "watched_overhead_seconds": best["watched"] - best["bare"],
            "compared_10pct_overhead_seconds": best["compared_10pct"] - best["bare"]}


# -- detect-to-rollback ---------------------------------------------------------------------


class PacedLoad:
    """Two threads calling a function at a fixed total rate, each on its own inputs."""

    def __init__(self, func: Callable[[list[int]], int], rate: float, workers: int = 2) -> None:
        self._func = func
        self._interval = workers / rate
        self._stop = threading.Event()
        self.calls = [0] * workers
        self.failures = 0
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                         for n in range(workers)]
        self.started = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()

    def _run(self, n: int) -> None:
        rng = random.Random(n)
        inputs = [[rng.randrange(1000) for _ in range(200)] for _ in range(500)]
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                self._func(inputs[self.calls[n] % len(inputs)])
            except Exception:
                self.failures += 1
            self.calls[n] += 1
            due += self._interval
            delay = due - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def rate(self) -> float:
        return sum(self.calls) / max(time.monotonic() - self.started, 1e-9)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)


def detect_trial(state_dir: Path, target: str, source: str, limits: CanaryLimits, *,
                 pure: bool, seed: int) -> dict[str, Any]:
    """Plant ``source`` on ``target`` under paced load; what the canary did, and how fast."""
    swapper = SwapManager()
    bus = ev.EventBus()
    seen: list[ev.Event] = []
    bus.subscribe(seen.append)
    with Snapshots(state_dir) as snapshots:
        ledger = Ledger.writer(snapshots)
        load = PacedLoad(swapper.function(target), CALLS_PER_SECOND)
        load.start()
        try:
            canary = Canary(swapper, ledger, bus, limits, pure=pure, stop=threading.Event(),
                            rng=random.Random(seed))
            baseline = canary.baseline(target)
            base = sha256_text(swapper.original_source(target))
            vid = ledger.propose(Candidate(target, source, "bench:planted", base), base)
            ledger.activate(target, vid, {"planted": True})
            code = swapper.compile(target, source, vid)
            installed = swapper.install(target, vid, code)
            verdict = canary.judge(installed, baseline, time.monotonic())
            rate = load.rate()
        finally:
            load.stop()
            swapper.rollback_all()
    rolled = [e for e in seen if isinstance(e, ev.VersionRolledBack)]
    return {"caught": isinstance(verdict, Regressed),
            "reason": verdict.reason if isinstance(verdict, Regressed) else "",
            # a version that got through: how its median compared, and what was not judged
            "passed_latency_ratio": verdict.latency_ratio if isinstance(verdict, Passed) else None,
            "passed_note": verdict.note if isinstance(verdict, Passed) else "",
            "detect_seconds": rolled[0].detect_seconds if rolled else None,
            "baseline_calls": baseline.calls, "calls_per_second": rate,
            "failures": load.failures}


def detect_to_rollback(root: Path) -> dict[str, list[dict[str, Any]]]:
    default = CanaryLimits.from_policy(DEFAULT_POLICY.canary)
    setups = {
        "wrong_5pct_default": (CHECKSUM, WRONG_ON_FIVE_PERCENT, default, True),
        "wrong_5pct_compare_all": (CHECKSUM, WRONG_ON_FIVE_PERCENT,
                                   dataclasses.replace(default, compare_sample=1.0), True),
        "slower_3x": (WEIGH, THREE_TIMES_SLOWER, default, False),
    }
    trials: dict[str, list[dict[str, Any]]] = {}
    for fault, (target, source, limits, pure) in setups.items():
        trials[fault] = []
        for n in range(TRIALS[fault]):
            trial = detect_trial(root / f"{fault}-{n}", target, source, limits, pure=pure,
                                 seed=n)
            trials[fault].append(trial)
            progress(NAME, f"{fault} #{n}: caught={trial['caught']} "
                           f"detect={trial['detect_seconds']} "
                           f"rate={trial['calls_per_second']:.0f}/s")
    return trials


def _detect_metrics(fault: str, trials: list[dict[str, Any]], reason: str
                    ) -> list[dict[str, Any]]:
    caught = [t for t in trials if t["caught"] and t["reason"] == reason]
    times = [t["detect_seconds"] for t in caught if t["detect_seconds"] is not None]
    return [
        metric(f"{fault}_caught_share", len(caught) / len(trials), "ratio",
               trials=len(trials)),
        metric(f"{fault}_detect_to_rollback_p50", statistics.median(times) if times else None,
               "seconds"),
        metric(f"{fault}_detect_to_rollback_max", max(times) if times else None, "seconds"),
    ]


def main() -> int:
    started = time.monotonic()
    load_before = os.getloadavg()
    progress(NAME, f"swap pause: {SWAP_PAIRS} install/rollback pairs under the demo workload")
    swaps = swap_pause()
    pauses = swaps["pauses"]
    progress(NAME, "probe overhead")
    overhead = probe_overhead()
    with tempfile.TemporaryDirectory(prefix="selfmod-bench-swap-") as tmp:
        trials = detect_to_rollback(Path(tmp))
    rates = [t["calls_per_second"] for ts in trials.values() for t in ts]
    # "higher": each quantile is a pause that was observed, never one interpolated below it
    levels = (0.5, 0.9, 0.99, 0.999)
    quantiles = {str(q): float(v)
                 for q, v in zip(levels, np.quantile(pauses, levels, method="higher"),
                                 strict=True)}
    metrics = [
        metric("swap_pause_p50", statistics.median(pauses), "seconds"),
        metric("swap_pause_p99", quantiles["0.99"], "seconds"),
        metric("swap_pause_max", max(pauses), "seconds"),
        metric("calls_failed_during_swaps", swaps["errors"] + swaps["oracle_mismatches"],
               "calls", target="== 0",
               met=swaps["errors"] + swaps["oracle_mismatches"] == 0),
        metric("canary_probe_overhead", overhead["watched_overhead_seconds"], "seconds/call"),
        metric("canary_compare_10pct_overhead", overhead["compared_10pct_overhead_seconds"],
               "seconds/call"),
        metric("detect_load_min_rate", min(rates), "calls/s", target=">= 200",
               met=min(rates) >= 200),
        *_detect_metrics("wrong_5pct_default", trials["wrong_5pct_default"], "canary_mismatch"),
        *_detect_metrics("wrong_5pct_compare_all", trials["wrong_5pct_compare_all"],
                         "canary_mismatch"),
        *_detect_metrics("slower_3x", trials["slower_3x"], "canary_latency"),
    ]
    parameters = {"swap_pairs": SWAP_PAIRS, "swap_target": DEMO_TARGET, "swap_workers": 2,
                  "calls_per_second": CALLS_PER_SECOND, "trials": TRIALS,
                  "overhead_calls": OVERHEAD_CALLS,
                  "default_canary": DEFAULT_POLICY.canary.model_dump()}
    details = {"swaps": {k: v for k, v in swaps.items() if k != "pauses"},
               "swap_pause_quantiles": quantiles,
               "probe_overhead": overhead, "detect_trials": trials}
    data = result(NAME, "Swap pause under load, canary probe overhead, and detect-to-rollback "
                        "time of planted faulty versions", metrics, parameters, details,
                  started=started, load_before=load_before)
    path = write_result(data)
    for m in metrics:
        print(f"{m['metric']}: {m['value']} {m['unit']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
