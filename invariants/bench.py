"""Paired, interleaved timing of the original and the candidate over a corpus.

The design follows what makes small timings trustworthy (pyperf's habits):

- a sample is one timed pass of ``loops`` repetitions of the whole corpus, with
  ``loops`` calibrated so the faster function's sample takes at least
  ``min_sample_seconds`` (clock resolution and call overhead then vanish);
- a warm-up sample of each before any sample is kept;
- samples come in pairs, and the order inside a pair alternates (AB, BA, AB…),
  so drift in machine speed hits both sides equally;
- arguments are prepared outside the timed region, and the garbage collector is
  off inside it (collected between pairs instead).

The statistics over the pairs live in :mod:`invariants.accept`.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Batch = list[tuple[tuple[Any, ...], dict[str, Any]]]
TimeBatch = Callable[[str, Batch], float]  # ("original" | "candidate", batch) -> seconds
Settled = Callable[[list[float], list[float]], bool]  # (original times, candidate times)


@dataclass(frozen=True)
class BenchResult:
    """Seconds per pass over the corpus, one entry per sample, paired by position."""

    original_times: tuple[float, ...]
    candidate_times: tuple[float, ...]
    loops: int


def paired_benchmark(time_batch: TimeBatch, make_batch: Callable[[int], Batch], *,
                     repeats: int, min_sample_seconds: float,
                     max_calls_per_sample: int = 200_000,
                     collect: Callable[[], object] = gc.collect,
                     settled: Settled | None = None) -> BenchResult:
    """Calibrate, warm up, then take up to ``repeats`` interleaved pairs of samples.

    ``settled`` is asked after every pair; once it answers yes, timing stops
    (see :func:`invariants.accept.settled`: a clear win or loss needs no more
    pairs, and a slow original makes every pair expensive).
    """
    loops = calibrate(time_batch, make_batch, min_sample_seconds, max_calls_per_sample)
    for which in ("original", "candidate"):
        _timed(time_batch, which, make_batch(loops))
    original: list[float] = []
    candidate: list[float] = []
    for sample in range(repeats):
        collect()
        order = ("original", "candidate") if sample % 2 == 0 else ("candidate", "original")
        for which in order:
            seconds = _timed(time_batch, which, make_batch(loops)) / loops
            (original if which == "original" else candidate).append(seconds)
        if settled is not None and settled(original, candidate):
            break
    return BenchResult(tuple(original), tuple(candidate), loops)


def calibrate(time_batch: TimeBatch, make_batch: Callable[[int], Batch],
              min_sample_seconds: float, max_calls_per_sample: int) -> int:
    """The loop count at which the faster side's sample reaches ``min_sample_seconds``.

    Growth stops early when the slower side already takes twenty times the target
    (a much slower candidate must not stretch the run towards its deadline).
    """
    loops = 1
    batch_size = max(1, len(make_batch(1)))
    while True:
        times = [_timed(time_batch, which, make_batch(loops))
                 for which in ("original", "candidate")]
        fastest, slowest = min(times), max(times)
        if fastest >= min_sample_seconds or slowest >= 20 * min_sample_seconds:
            return loops
        ceiling = max(1, max_calls_per_sample // batch_size)
        if loops >= ceiling:
            return loops
        factor = math.ceil(1.2 * min_sample_seconds / max(fastest, 1e-9))
        loops = min(ceiling, loops * min(10, max(2, factor)))


def _timed(time_batch: TimeBatch, which: str, batch: Batch) -> float:
    enabled = gc.isenabled()
    gc.disable()
    try:
        return time_batch(which, batch)
    finally:
        if enabled:
            gc.enable()

