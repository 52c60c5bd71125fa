"""The paired benchmark's protocol: calibration, warm-up, interleaving, fresh arguments."""

from __future__ import annotations

from collections.abc import Callable

from invariants.bench import Batch, calibrate, paired_benchmark


class FakeClockRunner:
    """Times a batch as a fixed cost per call, and logs the order of the samples."""

    def __init__(self, per_call: dict[str, float]) -> None:
        self.per_call = per_call
        self.log: list[tuple[str, int]] = []

    def __call__(self, which: str, batch: Batch) -> float:
        self.log.append((which, len(batch)))
        return self.per_call[which] * len(batch)


def batches(calls: list[int]) -> Callable[[int], Batch]:
    def make(loops: int) -> Batch:
        calls.append(loops)
        return [((i,), {}) for i in range(3)] * loops

    return make


def test_loops_are_calibrated_until_the_faster_side_is_long_enough() -> None:
    """The loop count grows until the faster function's sample reaches the minimum."""
    runner = FakeClockRunner({"original": 1e-6, "candidate": 5e-7})
    loops = calibrate(runner, batches([]), 0.01, 10**9)
    assert 0.01 <= 5e-7 * 3 * loops < 0.1


def test_a_much_slower_side_stops_calibration_early() -> None:
    """A very slow candidate does not drive the loop count (and the run time) up."""
    runner = FakeClockRunner({"original": 1e-6, "candidate": 1.0})
    assert calibrate(runner, batches([]), 0.01, 10**9) == 1


def test_samples_alternate_order_and_get_fresh_batches() -> None:
    """Pairs run AB, BA, AB…, after one warm-up each, each sample on a new batch."""
    runner = FakeClockRunner({"original": 2e-3, "candidate": 1e-3})
    made: list[int] = []
    result = paired_benchmark(runner, batches(made), repeats=4,
                              min_sample_seconds=0.001, collect=lambda: None)
    order = [which for which, _ in runner.log]
    calibration = len(order) - 2 - 8
    assert order[calibration:calibration + 2] == ["original", "candidate"]  # warm-up
    assert order[calibration + 2:] == ["original", "candidate", "candidate", "original"] * 2
    assert len(made) >= len(order)
    assert result.loops == 1
    assert result.original_times == (2e-3 * 3,) * 4
    assert result.candidate_times == (1e-3 * 3,) * 4


def test_timing_stops_once_the_pairs_are_settled() -> None:
    """``settled`` is asked after every pair with the times so far; a yes ends the run."""
    runner = FakeClockRunner({"original": 2e-3, "candidate": 1e-3})
    seen: list[int] = []

    def settled(original: list[float], candidate: list[float]) -> bool:
        assert len(original) == len(candidate)
        seen.append(len(original))
        return len(original) == 5

    result = paired_benchmark(runner, batches([]), repeats=15, min_sample_seconds=0.001,
                              collect=lambda: None, settled=settled)
    assert seen == [1, 2, 3, 4, 5]
    assert len(result.original_times) == len(result.candidate_times) == 5
