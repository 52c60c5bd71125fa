"""Tests for daemon.profiler: sampling real thread stacks and ranking targets in scope."""

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator

from daemon.profiler import Profiler
from invariants.targets import in_scope
from tests.clock import FakeClock
from tests.daemon.fixtures import hot


@contextlib.contextmanager
def busy(target: Callable[[threading.Event, threading.Event], object]) -> Iterator[None]:
    """``target`` running in a thread of its own (it sets ready, then runs until stop)."""
    stop = threading.Event()
    ready = threading.Event()
    thread = threading.Thread(target=target, args=(stop, ready))
    thread.start()
    ready.wait(5)
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _scope(target: str) -> bool:
    return in_scope(target, ["tests.daemon.fixtures.hot:*"])


def test_ranks_the_innermost_in_scope_function_of_a_busy_thread():
    """A thread spinning in hot.inner (called from hot.outer) is attributed to hot.inner."""
    profiler = Profiler(_scope, hz=100)
    with busy(hot.outer):
        for _ in range(20):
            profiler.sample(sys._current_frames(), skip=threading.get_ident())
    ranking = profiler.ranking()
    assert ranking[0].target == "tests.daemon.fixtures.hot:inner"
    assert ranking[0].samples == 20 and ranking[0].share == 1.0


def test_samples_leave_the_window_and_reset_forgets():
    """Samples older than the window no longer count, and reset() empties the window."""
    clock = FakeClock(0.0)
    profiler = Profiler(_scope, hz=10, window_seconds=5, clock=clock)
    with busy(hot.outer):
        profiler.sample(sys._current_frames(), skip=threading.get_ident())
        clock.now = 10.0
        assert profiler.ranking() == []
        profiler.sample(sys._current_frames(), skip=threading.get_ident())
        assert profiler.window_samples() == 1
        profiler.reset()
        assert profiler.window_samples() == 0


def test_out_of_scope_code_is_never_ranked():
    """With a scope that matches nothing, busy threads produce no hot spots."""
    profiler = Profiler(lambda target: False)
    with busy(hot.outer):
        profiler.sample(sys._current_frames())
    assert profiler.ranking() == []


def test_profiler_thread_stops_and_joins():
    """The sampling thread runs in the background and stop_and_join ends it."""
    profiler = Profiler(_scope, hz=200)
    profiler.start()
    profiler.stop_and_join()
    assert not profiler.is_alive()


def test_lambdas_count_towards_their_enclosing_function():
    """A sample inside a lambda is attributed to the function that defined it."""
    profiler = Profiler(_scope)
    with busy(hot.via_lambda):
        profiler.sample(sys._current_frames(), skip=threading.get_ident())
    assert [s.target for s in profiler.ranking()] == ["tests.daemon.fixtures.hot:via_lambda"]


def test_a_loop_that_never_returns_is_not_returning_and_its_callee_is():
    """hot.loop holds its frame for the whole run; the step() calls it makes are seen to
    return. Only step is ranked as returning, and its share leaves the loop's samples out."""
    clock = FakeClock(0.0)
    profiler = Profiler(_scope, hz=100, window_seconds=60, clock=clock)
    with busy(hot.loop):
        for _ in range(300):
            clock.now += 0.01
            profiler.sample(sys._current_frames(), skip=threading.get_ident())
            time.sleep(0.001)
    spots = {spot.target: spot for spot in profiler.ranking()}
    loop, step = spots["tests.daemon.fixtures.hot:loop"], spots["tests.daemon.fixtures.hot:step"]
    assert step.returning and step.share == 1.0
    assert not loop.returning and loop.running_seconds >= 2.9
    assert list(spots) == ["tests.daemon.fixtures.hot:step", "tests.daemon.fixtures.hot:loop"]


def test_a_thread_that_ends_returns_its_calls():
    """A call still on a thread's stack when the thread ends has returned."""
    stop = threading.Event()
    ready = threading.Event()
    thread = threading.Thread(target=hot.outer, args=(stop, ready))
    thread.start()
    ready.wait(5)
    profiler = Profiler(_scope, hz=100)
    profiler.sample(sys._current_frames(), skip=threading.get_ident())
    assert not profiler.ranking()[0].returning
    stop.set()
    thread.join()
    profiler.sample(sys._current_frames(), skip=threading.get_ident())
    assert all(spot.returning for spot in profiler.ranking())
