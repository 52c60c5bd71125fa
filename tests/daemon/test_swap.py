"""Tests for daemon.swap and daemon.probe: versions and probes installed into live functions."""

import sys
import threading

import pytest

from daemon.errors import SwapError
from daemon.swap import SwapManager
from tests.daemon.fixtures import canary_targets, sample

ADD = "tests.daemon.fixtures.sample:add"


@pytest.fixture
def swapper():
    manager = SwapManager()
    yield manager
    manager.rollback_all()


def test_every_reference_sees_the_swap(swapper):
    """A reference taken before the swap runs the new code, and rollback restores the old."""
    held = sample.add
    code = swapper.compile(ADD, "def add(a, b=2, *, scale=1):\n    return 100\n", "v1")
    installed = swapper.install(ADD, "v1", code)
    assert held(1) == 100 and sample.add(1) == 100
    assert installed.previous_version == ""
    swapper.rollback(ADD)
    assert held(1) == 3


def test_methods_and_static_methods_swap_in_place(swapper):
    """Bound methods of existing instances and static methods pick up a new version."""
    shape = sample.Shape(3)
    bound = shape.area
    target = "tests.daemon.fixtures.sample:Shape.area"
    swapper.install(target, "v", swapper.compile(target, "def area(self):\n    return -1\n", "v"))
    assert bound() == -1
    static = "tests.daemon.fixtures.sample:Shape.unit"
    swapper.install(static, "s", swapper.compile(static,
                                                 "@staticmethod\ndef unit():\n    return 2\n", "s"))
    assert sample.Shape.unit() == 2


def _add_returning(value: int) -> str:
    return f"def add(a, b=2, *, scale=1):\n    return {value}\n"


def test_rollback_falls_back_to_the_version_it_replaced(swapper):
    """Versions stack: each rollback puts back the code live before it, the original last."""
    for value in (10, 20, 30):
        swapper.install(ADD, f"v{value}", swapper.compile(ADD, _add_returning(value), "v"))
    assert sample.add(1) == 30
    assert [i.previous_version for i in swapper.stack(ADD)] == ["", "v10", "v20"]
    removed = swapper.rollback(ADD, "v30")
    assert (removed.version, removed.previous_version) == ("v30", "v20")
    assert sample.add(1) == 20 and swapper.active()[ADD].version == "v20"
    swapper.rollback(ADD)
    assert sample.add(1) == 10 and swapper.active()[ADD].previous_version == ""
    swapper.rollback(ADD)
    assert sample.add(1) == 3 and swapper.active() == {}
    assert sample.add.__code__ is swapper.original_code(ADD)


def test_rollback_of_a_version_no_longer_in_force_changes_nothing(swapper):
    """Asking to roll back a version that is not on top (a racing rollback won) is refused."""
    swapper.install(ADD, "v1", swapper.compile(ADD, _add_returning(1), "v1"))
    swapper.install(ADD, "v2", swapper.compile(ADD, _add_returning(2), "v2"))
    with pytest.raises(SwapError, match="not the one in force"):
        swapper.rollback(ADD, "v1")
    assert sample.add(0) == 2 and [i.version for i in swapper.stack(ADD)] == ["v1", "v2"]


def test_a_probe_in_place_at_install_time_is_never_a_rollback_target(swapper):
    """A version installed over a probe's trampoline rolls back to the real previous code."""
    swapper.install(ADD, "v1", swapper.compile(ADD, _add_returning(1), "v1"))
    probe = swapper.probe(ADD, lambda inner, a, k: inner(*a, **k))
    probe.install()
    try:
        swapper.install(ADD, "v2", swapper.compile(ADD, _add_returning(2), "v2"))
    finally:
        probe.remove()  # the trampoline is gone already: remove leaves v2 alone
    assert sample.add(0) == 2
    swapper.rollback(ADD)
    assert sample.add.__code__ is swapper.stack(ADD)[0].code and sample.add(0) == 1


def test_rollback_without_active_version_is_an_error(swapper):
    """Rolling back a target with nothing installed raises SwapError with a reason."""
    with pytest.raises(SwapError, match="no active version"):
        swapper.rollback(ADD)


def test_compile_refuses_what_cannot_be_installed(swapper):
    """A version with different free variables or broken syntax is refused with SwapError."""
    with pytest.raises(SwapError):
        swapper.compile("tests.daemon.fixtures.sample:bump", "def bump(x):\n    return x\n", "v")
    with pytest.raises(SwapError):
        swapper.compile(ADD, "def add(a, b=2, *, scale=1)\n    return 1\n", "v")


def test_probe_sees_every_call_and_passes_results_and_exceptions_through(swapper):
    """A probe calls the handler with the previous code; values and exceptions are unchanged."""
    seen = []

    def handler(inner, args, kwargs):
        seen.append((args, kwargs))
        return inner(*args, **kwargs)

    probe = swapper.probe("tests.daemon.fixtures.sample:fails", handler)
    probe.install()
    try:
        with pytest.raises(ValueError, match="bad 7"):
            sample.fails(7)
    finally:
        probe.remove()
    assert seen == [((7,), {})]
    add_probe = swapper.probe(ADD, handler)
    add_probe.install()
    try:
        assert sample.add(1, scale=3) == 9
    finally:
        add_probe.remove()
    assert seen[-1] == ((1,), {"scale": 3})
    assert sample.add.__code__ is swapper.original_code(ADD)


def test_probe_on_a_closure_keeps_its_cells(swapper):
    """A probe on a closure calls through with the closure's cells intact."""
    probe = swapper.probe("tests.daemon.fixtures.sample:bump",
                          lambda inner, a, k: inner(*a, **k) * 2)
    probe.install()
    try:
        assert sample.bump(1) == 8
    finally:
        probe.remove()
    assert sample.bump(1) == 4


def test_ten_thousand_swaps_under_concurrent_calls_never_fail_a_call(swapper):
    """5,000 install/rollback pairs under two calling threads: every call succeeds, and right."""
    target = "tests.daemon.fixtures.canary_targets:checksum"
    fast = swapper.compile(ADD, "def add(a, b=2, *, scale=1):\n    return scale * (b + a)\n", "f")
    looping = swapper.compile(target, canary_targets.EQUIVALENT, "e")
    values = list(range(60))
    expected = canary_targets.checksum(values)
    stop = threading.Event()
    errors: list[object] = []
    calls = [0, 0]

    def caller(n: int) -> None:
        while not stop.is_set():
            try:
                # a loop long enough to be preempted mid-call, so swaps land under running calls
                if sample.add(2, 3) != 5 or canary_targets.checksum(values) != expected:
                    errors.append("wrong result")
            except Exception as exc:
                errors.append(exc)
            calls[n] += 1

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(2)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # hand the GIL over often: interleave swaps with calls finely
    for t in threads:
        t.start()
    try:
        for n in range(5000):
            swapper.install(ADD, "f", fast)
            swapper.install(target, "e", looping)
            if n % 500 == 0:  # both callers are running while the swaps go on
                before = list(calls)
                while any(now == was for now, was in zip(calls, before, strict=True)):
                    stop.wait(0.001)
            swapper.rollback(ADD)
            swapper.rollback(target)
    finally:
        stop.set()
        for t in threads:
            t.join()
        sys.setswitchinterval(interval)
    assert errors == []
    assert sample.add.__code__ is swapper.original_code(ADD)
    assert min(calls) >= 10
