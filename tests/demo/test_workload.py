"""The demo workload: input from a seed, worker threads, counters, and the oracle check."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from demo import logstats, oracle
from demo.workload import DemoWorkload, generate_batch, make_pool
from invariants import targets
from tests.clock import FakeClock

SMALL = {"batch_size": 200, "pool_size": 2}

MakeWorkload = Callable[..., DemoWorkload]


@pytest.fixture
def make_workload() -> Iterator[MakeWorkload]:
    """Build workloads that are always stopped and joined when the test ends."""
    made: list[DemoWorkload] = []

    def make(**kwargs: object) -> DemoWorkload:
        workload = DemoWorkload(**kwargs)  # type: ignore[arg-type]
        made.append(workload)
        return workload

    yield make
    for workload in made:
        workload.stop()
    for workload in made:
        assert workload.join(timeout=10)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        time.sleep(0.01)


def test_same_seed_same_batches() -> None:
    """The input pool is a function of the seed alone."""
    assert make_pool(seed=7, batches=3, size=100) == make_pool(seed=7, batches=3, size=100)
    assert make_pool(seed=7, batches=1, size=100) != make_pool(seed=8, batches=1, size=100)


def test_generated_input_is_realistic() -> None:
    """Generated batches have the asked size, a few malformed lines and repeated sessions."""
    import random

    lines = generate_batch(random.Random(1), 1000, start=1_709_294_400)
    assert len(lines) == 1000
    records = logstats.parse_batch(lines)
    assert 900 < len(records) < 1000
    sessions = logstats.dedupe_sessions(records)
    assert len(sessions) < len(records) * 0.8
    assert len(logstats.unique_visitors(records)) < len(sessions)


def test_workload_pool_comes_from_its_seed(make_workload: MakeWorkload) -> None:
    """A started workload cycles through exactly the pool its seed generates."""
    workload = make_workload(seed=11, workers=1, **SMALL)
    assert workload.pool == ()
    workload.start()
    assert workload.pool == make_pool(seed=11, batches=2, size=200)


def test_workload_runs_counts_and_stops(make_workload: MakeWorkload) -> None:
    """Workers process batches, throughput is positive, and stop+join ends every thread."""
    workload = make_workload(seed=1, workers=2, oracle_every=3, **SMALL)
    workload.start()
    threads = workload.threads
    assert len(threads) == 2 and all(t.is_alive() for t in threads)
    wait_for(lambda: workload.snapshot().batches >= 6)
    assert workload.throughput() > 0
    workload.stop()
    assert workload.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert not any(t in threading.enumerate() for t in threads)
    stats = workload.snapshot()
    assert stats.items == stats.batches * 200
    assert stats.oracle_checks >= 1
    assert (stats.errors, stats.mismatches) == (0, 0)


def test_throughput_is_over_a_sliding_window(make_workload: MakeWorkload) -> None:
    """Throughput divides the items finished within the window by the window's length."""
    clock = FakeClock(100.0)
    workload = make_workload(seed=1, workers=1, clock=clock, window_seconds=10.0, **SMALL)
    assert workload.throughput() == 0.0
    workload.start()
    wait_for(lambda: workload.snapshot().batches >= 2)
    workload.stop()
    assert workload.join(timeout=10)
    items = workload.snapshot().items
    clock.now += 4.0  # all batches finished at 100.0; 4 s have passed since the start
    assert workload.throughput() == items / 4.0
    clock.now += 5.0
    assert workload.throughput() == items / 9.0
    clock.now += 1.0  # now the batches are a full window old
    assert workload.throughput() == 0.0


def test_swapped_wrong_code_is_caught_by_the_oracle(make_workload: MakeWorkload) -> None:
    """A wrong __code__ swapped into a live function is counted, reported and named."""
    live = targets.resolve(targets.Target.parse("demo.logstats:count_by_status"))
    batch = list(make_pool(seed=2, batches=1, size=200)[0])
    expected = oracle.oracle_process_batch(batch)
    wrong = targets.compile_function(
        "def count_by_status(records):\n"
        "    counts = {}\n"
        "    for rec in records:\n"
        "        klass = str(rec[5] // 100) + 'xx'\n"
        "        counts[klass] = counts.get(klass, 0) + 2\n"
        "    return counts\n",
        live, filename="<wrong count_by_status>")
    reported: list[tuple[str, str]] = []
    lock = threading.Lock()

    def on_mismatch(function: str, detail: str) -> None:
        with lock:
            reported.append((function, detail))

    workload = make_workload(seed=2, workers=1, oracle_every=1, on_mismatch=on_mismatch,
                             **SMALL)
    run_until_mismatch(workload, live, wrong)
    assert workload.snapshot().mismatches > 0
    with lock:
        assert reported and reported[0][0] == "count_by_status"
    # the oracle kept the original behaviour throughout
    assert oracle.oracle_module().count_by_status.__code__ is not wrong
    assert oracle.oracle_process_batch(batch) == expected


def run_until_mismatch(workload: DemoWorkload, live: Any, wrong: Any) -> None:
    """Run ``workload`` with ``wrong`` swapped into ``live`` until the oracle objects."""
    original_code = live.__code__
    live.__code__ = wrong
    try:
        workload.start()
        wait_for(lambda: workload.snapshot().mismatches > 0)
        workload.stop()
        assert workload.join(timeout=10)
    finally:
        live.__code__ = original_code


def test_a_raising_swap_counts_as_error_and_mismatch(make_workload: MakeWorkload) -> None:
    """When live code raises, the batch is an error, and on a checked batch a mismatch."""
    live = targets.resolve(targets.Target.parse("demo.logstats:time_range"))
    wrong = targets.compile_function("def time_range(records):\n    raise RuntimeError('x')\n",
                                     live, filename="<raising time_range>")
    errors: list[BaseException] = []
    reported: list[str] = []
    workload = make_workload(seed=2, workers=1, oracle_every=1, on_error=errors.append,
                             on_mismatch=lambda function, detail: reported.append(function),
                             **SMALL)
    run_until_mismatch(workload, live, wrong)
    stats = workload.snapshot()
    assert stats.errors > 0 and stats.batches == 0
    assert isinstance(errors[0], RuntimeError)
    assert reported[0] == "time_range"


def test_workload_rejects_nonsense_settings() -> None:
    """Counts below one and an empty window are refused at construction."""
    with pytest.raises(ValueError):
        DemoWorkload(workers=0)
    with pytest.raises(ValueError):
        DemoWorkload(oracle_every=0)
    with pytest.raises(ValueError):
        DemoWorkload(window_seconds=0)
