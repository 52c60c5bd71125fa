"""Tests for daemon.recorder: real calls captured into a corpus at a bounded cost."""

import contextlib
import itertools
import pickle
import threading

import pytest

from daemon.recorder import Recorder, RecordingLimits
from daemon.swap import SwapManager
from tests.daemon.fixtures import sample


def _record_while(target, func, limits, calls):
    swapper = SwapManager()
    recorder = Recorder(target, "base", func, limits, probe_lock=swapper.lock)
    done = threading.Event()
    result = {}

    def run():
        result["recording"] = recorder.record()
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    while not recorder._probe.installed and not done.is_set():
        pass
    for call in calls:
        with contextlib.suppress(ValueError):
            call()
    thread.join(10)
    return result["recording"]


def test_records_arguments_results_and_exceptions():
    """Each recorded call keeps its arguments, and its value or exception type and message."""
    limits = RecordingLimits(calls=3, timeout_seconds=5)
    calls = [lambda: sample.fails(1), lambda: sample.add(1, 2), lambda: sample.add(2, scale=2)]
    recording = _record_while("tests.daemon.fixtures.sample:fails", sample.fails, limits,
                              calls[:1])
    assert [r.outcome for r in recording.corpus.records] == ["raise"]
    assert recording.corpus.records[0].exc_type == "ValueError"
    assert recording.corpus.records[0].exc_message == "bad 1"
    recording = _record_while("tests.daemon.fixtures.sample:add", sample.add, limits, calls[1:])
    records = recording.corpus.records
    assert [r.load_args() for r in records] == [((1, 2), {}), ((2,), {"scale": 2})]
    assert [pickle.loads(r.result_blob) for r in records] == [3, 8]


def test_arguments_are_copied_before_the_call_and_mutation_is_recorded():
    """A function that mutates its input is recorded with the input as it was before the call."""
    limits = RecordingLimits(calls=1, timeout_seconds=5)
    recording = _record_while("tests.daemon.fixtures.sample:mutate", sample.mutate, limits,
                              [lambda: sample.mutate([1, 2])])
    record = recording.corpus.records[0]
    assert record.load_args() == (([1, 2],), {})
    assert pickle.loads(record.args_after_blob) == (([1, 2, 2],), {})


def test_unpicklable_and_oversized_calls_are_skipped_with_a_reason():
    """Calls whose arguments cannot be stored are counted as skipped, and still run normally."""
    limits = RecordingLimits(calls=5, max_record_bytes=200, timeout_seconds=0.5)
    lock = threading.Lock()
    results = []
    recording = _record_while(
        "tests.daemon.fixtures.sample:add", sample.add, limits,
        [lambda: results.append(sample.add([lock], [])),
         lambda: results.append(sample.add("x" * 1000, "y"))])
    assert recording.corpus.records == ()
    assert recording.skipped == {"unpicklable_args": 1, "too_large": 1}
    assert results == [[lock], "x" * 1000 + "y"]


def test_probe_is_removed_after_recording():
    """After recording, the live function runs its own code again."""
    original = sample.add.__code__
    _record_while("tests.daemon.fixtures.sample:add", sample.add,
                  RecordingLimits(calls=1, timeout_seconds=5), [lambda: sample.add(1)])
    assert sample.add.__code__ is original


@pytest.mark.parametrize("threads", [4])
def test_concurrent_calls_are_counted_once_and_bounded(threads):
    """Calls from several threads are recorded up to the bound and never more."""
    limits = RecordingLimits(calls=50, timeout_seconds=5)
    swapper = SwapManager()
    recorder = Recorder("tests.daemon.fixtures.sample:add", "b", sample.add, limits,
                        probe_lock=swapper.lock)
    stop = threading.Event()
    counter = itertools.count()

    def caller():
        while not stop.is_set():
            n = next(counter)
            assert sample.add(n, 1) == n + 1

    workers = [threading.Thread(target=caller) for _ in range(threads)]
    for w in workers:
        w.start()
    try:
        recording = recorder.record()
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert len(recording.corpus.records) == 50


def test_repeated_inputs_are_recorded_once():
    """A call with arguments equal to one already recorded is skipped as a duplicate."""
    limits = RecordingLimits(calls=5, timeout_seconds=0.5)
    recording = _record_while("tests.daemon.fixtures.sample:add", sample.add, limits,
                              [lambda: sample.add(1, 2), lambda: sample.add(1, 2),
                               lambda: sample.add(2, 2)])
    assert [r.load_args() for r in recording.corpus.records] == [((1, 2), {}), ((2, 2), {})]
    assert recording.skipped == {"duplicate": 1}


def test_recording_ends_early_once_inputs_only_repeat():
    """A workload that keeps repeating the inputs already seen ends recording before the bound."""
    limits = RecordingLimits(calls=100, timeout_seconds=30, saturation=4)
    calls = [lambda n=n: sample.add(n % 2) for n in range(12)]
    recording = _record_while("tests.daemon.fixtures.sample:add", sample.add, limits, calls)
    assert len(recording.corpus.records) == 2
    assert recording.skipped["duplicate"] == 4
