"""Tests for daemon.canary: the watching probe, and live canaries, rollouts and rollbacks."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from daemon import events as ev
from daemon.canary import (
    LATENCY,
    MISMATCH,
    Canary,
    CanaryLimits,
    Passed,
    Regressed,
    Watch,
    roll_back,
)
from daemon.ledger import Ledger
from daemon.swap import SwapManager
from daemon.synthesis.base import Candidate
from envelope.policy import Canary as CanaryPolicy
from invariants.targets import sha256_text
from snapshots import Snapshots
from snapshots.versions import VersionStatus
from tests.daemon.fixtures import canary_targets


def canary_limits(*, baseline_seconds: float | None = None, **canary: Any) -> CanaryLimits:
    """The limits of a policy canary section with ``canary`` set (and the baseline, if given)."""
    built = CanaryLimits.from_policy(CanaryPolicy(**canary))
    return built if baseline_seconds is None else replace(built, baseline_seconds=baseline_seconds)


CHECKSUM = "tests.daemon.fixtures.canary_targets:checksum"
WEIGH = "tests.daemon.fixtures.canary_targets:weigh"


# -- the watching probe --------------------------------------------------------------------


def test_watch_passes_results_and_exceptions_through_and_counts_them():
    """The handler returns the inner result, re-raises its exception, and counts both."""
    watch = Watch(10)

    def inner(x: int) -> int:
        if x < 0:
            raise ValueError("negative")
        return x * 2

    assert watch(inner, (3,), {}) == 6
    with pytest.raises(ValueError, match="negative"):
        watch(inner, (-1,), {})
    seen = watch.window(0.0)
    assert (seen.calls, seen.errors, len(seen.latencies)) == (2, 1, 2)


def test_watch_compares_with_the_control_but_the_caller_gets_the_new_outcome():
    """A control that raises or differs is evidence; the caller still gets the live result."""

    def control(x: int) -> int:
        if x == 1:
            raise RuntimeError("control broke")
        return x

    watch = Watch(10, control=control, sample=1.0)
    assert watch(lambda x: x, (1,), {}) == 1  # control raised, live returned: a mismatch
    seen = watch.window(0.0)
    assert seen.compared == 1 and seen.mismatches[0].kind == "outcome"
    assert "control broke" in seen.mismatches[0].previous
    assert watch.done.is_set()  # one mismatch is enough


def test_watch_never_raises_its_own_failures_into_the_caller():
    """A result whose ``__eq__`` raises, or an iterator, reaches the caller untouched."""

    class Weird:
        def __eq__(self, other: object) -> bool:
            raise AssertionError("comparison must not call __eq__")

    watch = Watch(10, control=lambda: Weird(), sample=1.0)
    result = watch(lambda: Weird(), (), {})
    assert isinstance(result, Weird)
    iterator = iter([1, 2])
    lazy = Watch(10, control=lambda: iter([3]), sample=1.0)
    assert lazy(lambda: iterator, (), {}) is iterator and list(iterator) == [1, 2]
    assert lazy.window(0.0).compared == 0


def test_watch_never_lets_a_hostile_outcome_or_control_reach_the_caller():
    """A result whose ``__class__`` raises, or a control calling sys.exit, leaves the caller be."""

    class Hostile:
        @property  # type: ignore[misc]
        def __class__(self) -> type:
            raise RuntimeError("__class__ is hostile")

    hostile = Hostile()
    watch = Watch(10, control=lambda: 1, sample=1.0)
    assert watch(lambda: hostile, (), {}) is hostile

    def exits() -> int:
        raise SystemExit(3)

    exiting = Watch(10, control=exits, sample=1.0)
    assert exiting(lambda: 5, (), {}) == 5
    assert exiting.window(0.0).mismatches[0].kind == "outcome"


def test_watch_stops_collecting_once_the_window_is_full():
    """After ``calls`` calls the handler only passes calls through."""
    watch = Watch(3)
    for n in range(10):
        assert watch(lambda v: v + 1, (n,), {}) == n + 1
    assert watch.done.is_set() and watch.window(0.0).calls == 3


# -- live canaries under load --------------------------------------------------------------


@dataclass
class Load:
    """Worker threads calling a target in a loop, counting calls and failures."""

    func_name: str
    workers: int = 2
    stop: threading.Event = field(default_factory=threading.Event)
    calls: list[int] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.calls = [0] * self.workers
        for n in range(self.workers):
            thread = threading.Thread(target=self._run, args=(n,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _run(self, n: int) -> None:
        rng = random.Random(n)
        func = getattr(canary_targets, self.func_name)
        inputs = [[rng.randrange(1000) for _ in range(150)] for _ in range(400)]
        while not self.stop.is_set():
            try:
                func(inputs[self.calls[n] % len(inputs)])
            except BaseException as exc:
                self.failures.append(exc)
            self.calls[n] += 1

    def wait_for_calls(self, count: int) -> None:
        while sum(self.calls) < count:
            self.stop.wait(0.01)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


@pytest.fixture
def setting(tmp_path: Path) -> Iterator[tuple[SwapManager, Ledger, ev.EventBus, list[ev.Event]]]:
    swapper = SwapManager()
    snapshots = Snapshots(tmp_path / "state")
    bus = ev.EventBus()
    seen: list[ev.Event] = []
    bus.subscribe(seen.append)
    yield swapper, Ledger.writer(snapshots), bus, seen
    swapper.rollback_all()
    snapshots.close()


def plant(swapper: SwapManager, ledger: Ledger, target: str, source: str) -> str:
    """Record a version as active in the ledger and install it directly: no gate, no shadow."""
    base = sha256_text(swapper.original_source(target))
    vid = ledger.propose(Candidate(target, source, "test:planted", base), base)
    ledger.activate(target, vid, {"planted": True})
    return vid


def run_canary(setting: tuple[SwapManager, Ledger, ev.EventBus, list[ev.Event]],
               target: str, source: str, limits: CanaryLimits, *, pure: bool,
               ) -> tuple[object, str, Load]:
    swapper, ledger, bus, _ = setting
    load = Load(target.rpartition(":")[2])
    load.start()
    try:
        load.wait_for_calls(200)
        canary = Canary(swapper, ledger, bus, limits, pure=pure, stop=threading.Event(),
                        rng=random.Random(7))
        baseline = canary.baseline(target)
        vid = plant(swapper, ledger, target, source)
        code = swapper.compile(target, source, vid)
        installed = swapper.install(target, vid, code)
        result = canary.judge(installed, baseline, installed_at=time.monotonic())
        calls_at_verdict = sum(load.calls)
        load.wait_for_calls(calls_at_verdict + 200)  # the workload kept going afterwards
    finally:
        load.finish()
    return result, vid, load


def assert_rolled_back(setting: tuple[SwapManager, Ledger, ev.EventBus, list[ev.Event]],
                       result: object, vid: str, target: str, reason: str) -> None:
    swapper, ledger, _, seen = setting
    assert isinstance(result, Regressed) and result.reason == reason, result
    assert swapper.active() == {}
    assert swapper.function(target).__code__ is swapper.original_code(target)
    rolled = [e for e in seen if isinstance(e, ev.VersionRolledBack)]
    assert [(e.target, e.version, e.reason) for e in rolled] == [(target, vid, reason)]
    assert rolled[0].detail == result.detail and rolled[0].detect_seconds > 0
    record = ledger.state.load().versions[vid]
    assert record.status is VersionStatus.ROLLED_BACK and record.evidence["reason"] == reason
    assert ledger.state.load().active == {}
    assert not [e for e in seen if isinstance(e, ev.CanaryPassed)]


def test_a_version_wrong_on_five_percent_of_inputs_is_rolled_back_for_mismatch(setting):
    """Planted past the shadow on a pure target, a 5%-wrong version is caught and rolled back."""
    limits = canary_limits(calls=5000, seconds=60.0, compare_sample=0.5, baseline_seconds=5.0)
    result, vid, load = run_canary(setting, CHECKSUM, canary_targets.WRONG_ON_FIVE_PERCENT,
                                   limits, pure=True)
    assert_rolled_back(setting, result, vid, CHECKSUM, MISMATCH)
    assert load.failures == []
    assert isinstance(result, Regressed) and "previous: " in result.detail


def test_a_version_three_times_slower_is_rolled_back_for_latency(setting):
    """Planted past the shadow, a correct but 3x slower version is rolled back on latency."""
    limits = canary_limits(calls=400, seconds=60.0, compare_sample=0.0, baseline_seconds=5.0)
    result, vid, load = run_canary(setting, WEIGH, canary_targets.THREE_TIMES_SLOWER, limits,
                                   pure=False)
    assert_rolled_back(setting, result, vid, WEIGH, LATENCY)
    assert load.failures == []


def test_a_good_version_passes_and_its_probes_are_removed(setting):
    """An equivalent version passes on a pure target; the live code is the version's, unprobed.

    The latency bound is wide: on calls of a few microseconds a loaded machine can
    double a median, and the latency verdict has its own test above.
    """
    swapper, ledger, _, seen = setting
    limits = canary_limits(calls=400, seconds=60.0, compare_sample=0.5, baseline_seconds=5.0,
                           max_latency_ratio=20.0)
    result, vid, load = run_canary(setting, CHECKSUM, canary_targets.EQUIVALENT, limits,
                                   pure=True)
    assert isinstance(result, Passed), result
    assert load.failures == []
    assert swapper.active()[CHECKSUM].version == vid
    assert swapper.function(CHECKSUM).__code__ is swapper.active()[CHECKSUM].code
    passed = [e for e in seen if isinstance(e, ev.CanaryPassed)]
    assert len(passed) == 1 and passed[0].version == vid and passed[0].compared > 0
    assert passed[0].calls >= limits.calls
    assert ledger.state.load().active == {CHECKSUM: vid}


def test_roll_back_of_a_version_no_longer_in_force_changes_nothing(setting):
    """A rollback that lost the race to another one returns False and publishes nothing."""
    swapper, ledger, bus, seen = setting
    vid = plant(swapper, ledger, CHECKSUM, canary_targets.EQUIVALENT)
    installed = swapper.install(CHECKSUM, vid, swapper.compile(CHECKSUM,
                                                               canary_targets.EQUIVALENT, vid))
    assert roll_back(swapper, ledger, bus, installed, "operator")
    assert not roll_back(swapper, ledger, bus, installed, "operator")
    assert [type(e) for e in seen] == [ev.VersionRolledBack]
    assert ledger.state.load().versions[vid].status is VersionStatus.ROLLED_BACK


def test_a_regression_over_an_earlier_version_falls_back_to_that_version(setting):
    """Rolled back from over an accepted version, the live code and the state return to it."""
    swapper, ledger, _, seen = setting
    earlier = plant(swapper, ledger, CHECKSUM, canary_targets.EQUIVALENT)
    earlier_code = swapper.compile(CHECKSUM, canary_targets.EQUIVALENT, earlier)
    swapper.install(CHECKSUM, earlier, earlier_code)
    limits = canary_limits(calls=5000, seconds=60.0, compare_sample=0.5, baseline_seconds=5.0)
    result, vid, load = run_canary(setting, CHECKSUM, canary_targets.WRONG_ON_FIVE_PERCENT,
                                   limits, pure=True)
    assert isinstance(result, Regressed) and result.reason == MISMATCH, result
    assert load.failures == []
    assert swapper.function(CHECKSUM).__code__ is earlier_code
    assert {t: i.version for t, i in swapper.active().items()} == {CHECKSUM: earlier}
    state = ledger.state.load()
    assert state.active == {CHECKSUM: earlier}
    assert state.versions[earlier].status is VersionStatus.ACTIVE
    assert state.versions[vid].status is VersionStatus.ROLLED_BACK
    assert state.versions[vid].evidence["replaces"] == earlier
    assert state.versions[vid].evidence["reinstated"] == earlier
    rolled = [e for e in seen if isinstance(e, ev.VersionRolledBack)]
    assert [(e.version, e.restored) for e in rolled] == [(vid, earlier)]


def _proposed(ledger: Ledger, swapper: SwapManager, target: str, source: str) -> str:
    base = sha256_text(swapper.original_source(target))
    return ledger.propose(Candidate(target, source, "test:proposed", base), base)


def test_roll_out_installs_records_and_judges_a_version(setting):
    """roll_out takes a baseline, swaps, activates with the evidence, announces and judges."""
    swapper, ledger, bus, seen = setting
    vid = _proposed(ledger, swapper, CHECKSUM, canary_targets.EQUIVALENT)
    code = swapper.compile(CHECKSUM, canary_targets.EQUIVALENT, vid)
    canary = Canary(swapper, ledger, bus, canary_limits(calls=50, seconds=0.5, compare_sample=0.1,
                                                 baseline_seconds=0.1),
                    pure=True, stop=threading.Event())
    rollout = canary.roll_out(CHECKSUM, vid, code, {"speedup": 1.5}, expect_live="")
    assert rollout.installed is not None and isinstance(rollout.verdict, Passed)
    assert swapper.function(CHECKSUM).__code__ is code
    record = ledger.state.load().versions[vid]
    assert record.status is VersionStatus.ACTIVE and record.evidence["speedup"] == 1.5
    assert [type(e) for e in seen] == [ev.RolloutStarted, ev.VersionSwapped, ev.CanaryPassed]
    assert seen[0] == ev.RolloutStarted(CHECKSUM, vid)


def test_roll_out_refuses_a_version_made_from_code_no_longer_live(setting):
    """A version made from the original is not installed over a version that went live since."""
    swapper, ledger, bus, seen = setting
    live = plant(swapper, ledger, CHECKSUM, canary_targets.EQUIVALENT)
    swapper.install(CHECKSUM, live, swapper.compile(CHECKSUM, canary_targets.EQUIVALENT, live))
    source = canary_targets.EQUIVALENT.replace("item", "entry")
    vid = _proposed(ledger, swapper, CHECKSUM, source)
    canary = Canary(swapper, ledger, bus, canary_limits(seconds=0.2, baseline_seconds=0.05),
                    pure=False, stop=threading.Event())
    rollout = canary.roll_out(CHECKSUM, vid, swapper.compile(CHECKSUM, source, vid), {},
                              expect_live="")
    assert rollout.installed is None and rollout.verdict is None
    assert f"version {live[:12]} is live now" in rollout.refused
    assert swapper.active()[CHECKSUM].version == live
    assert seen == [ev.RolloutStarted(CHECKSUM, vid)]  # it started, and stopped short
    assert ledger.state.load().active == {CHECKSUM: live}
