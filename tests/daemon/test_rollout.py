"""Tests for daemon.rollout: the one step that puts versions live and takes them out."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from daemon import events as ev
from daemon.canary import Passed, Regressed
from daemon.ledger import Ledger
from daemon.rollout import Followups, Rollouts
from daemon.swap import SwapManager
from daemon.synthesis.base import Candidate
from envelope.policy import DEFAULT_POLICY, Budgets, Invariants, Policy
from envelope.policy import Canary as CanaryPolicy
from invariants.targets import sha256_text
from snapshots import Snapshots
from snapshots.versions import VersionStatus
from tests.daemon.fixtures import canary_targets
from tests.daemon.test_canary import Load

CHECKSUM = "tests.daemon.fixtures.canary_targets:checksum"
WEIGH = "tests.daemon.fixtures.canary_targets:weigh"
# a short canary: without load it sees no calls and passes at once
QUICK = DEFAULT_POLICY.model_copy(update={"canary": CanaryPolicy(calls=50, seconds=0.4)})


@dataclass
class Record:
    """What the follow-ups were told, by kind."""

    calls: list[tuple[str, str]] = field(default_factory=list)

    def followups(self) -> Followups:
        return Followups(regressed=lambda t: self.calls.append(("regressed", t)),
                         live=lambda t: self.calls.append(("live", t)),
                         refused=lambda t: self.calls.append(("refused", t)))


@dataclass
class Setting:
    swapper: SwapManager
    ledger: Ledger
    bus: ev.EventBus
    seen: list[ev.Event]
    record: Record

    def rollouts(self, policy: Policy = QUICK) -> Rollouts:
        return Rollouts(self.swapper, self.ledger, self.bus, lambda: policy,
                        stop=threading.Event(), followups=self.record.followups())

    def proposed(self, target: str, source: str) -> str:
        base = sha256_text(self.swapper.original_source(target))
        return self.ledger.propose(Candidate(target, source, "test:proposed", base), base)


@pytest.fixture
def setting(tmp_path: Path) -> Iterator[Setting]:
    swapper = SwapManager()
    snapshots = Snapshots(tmp_path / "state")
    bus = ev.EventBus()
    seen: list[ev.Event] = []
    bus.subscribe(seen.append)
    yield Setting(swapper, Ledger.writer(snapshots), bus, seen, Record())
    swapper.rollback_all()
    snapshots.close()


def test_a_version_that_holds_up_is_live_and_the_profiler_ranks_again(setting: Setting):
    """roll_out installs, records and watches the version, then tells the `live` follow-up."""
    rollouts = setting.rollouts()
    vid = setting.proposed(CHECKSUM, canary_targets.EQUIVALENT)
    code = rollouts.compile(CHECKSUM, vid)
    rollout = rollouts.roll_out(CHECKSUM, vid, code, {"speedup": 1.5}, expect_live="")
    assert rollout.installed is not None and isinstance(rollout.verdict, Passed)
    assert rollouts.active()[CHECKSUM].version == vid
    assert setting.ledger.state.load().versions[vid].status is VersionStatus.ACTIVE
    assert setting.record.calls == [("live", CHECKSUM)]


def test_a_regression_is_rolled_back_and_cools_the_target_down(setting: Setting):
    """A version the canary refuses is taken out and the `regressed` follow-up is told."""
    policy = QUICK.model_copy(update={
        "canary": CanaryPolicy(calls=5000, seconds=20.0, compare_sample=1.0),
        "invariants": Invariants(pure=(CHECKSUM,))})
    rollouts = setting.rollouts(policy)
    vid = setting.proposed(CHECKSUM, canary_targets.WRONG_ON_FIVE_PERCENT)
    load = Load("checksum")
    load.start()
    try:
        load.wait_for_calls(200)
        rollout = rollouts.roll_out(CHECKSUM, vid, rollouts.compile(CHECKSUM, vid), {})
    finally:
        load.finish()
    assert isinstance(rollout.verdict, Regressed) and rollout.verdict.reason == "canary_mismatch"
    assert rollouts.active() == {}
    assert setting.record.calls == [("regressed", CHECKSUM)]


def test_a_version_refused_before_install_has_no_follow_up(setting: Setting):
    """A rollout that installs nothing (other code went live meanwhile) tells no follow-up."""
    rollouts = setting.rollouts()
    live = setting.proposed(CHECKSUM, canary_targets.EQUIVALENT)
    rollouts.roll_out(CHECKSUM, live, rollouts.compile(CHECKSUM, live), {})
    source = canary_targets.EQUIVALENT.replace("item", "entry")
    vid = setting.proposed(CHECKSUM, source)
    rollout = rollouts.roll_out(CHECKSUM, vid, rollouts.compile(CHECKSUM, vid), {},
                                expect_live="")
    assert rollout.installed is None and "is live now" in rollout.refused
    assert setting.record.calls == [("live", CHECKSUM)]


def test_an_operator_rollback_is_refused_once(setting: Setting):
    """roll_back takes the live version out and tells `refused`; a second time it does nothing."""
    rollouts = setting.rollouts()
    vid = setting.proposed(CHECKSUM, canary_targets.EQUIVALENT)
    rollouts.roll_out(CHECKSUM, vid, rollouts.compile(CHECKSUM, vid), {})
    installed = rollouts.active()[CHECKSUM]
    assert rollouts.roll_back(installed, "operator")
    assert not rollouts.roll_back(installed, "operator")
    assert rollouts.active() == {}
    assert setting.record.calls == [("live", CHECKSUM), ("refused", CHECKSUM)]
    rolled = [e for e in setting.seen if isinstance(e, ev.VersionRolledBack)]
    assert [(e.version, e.reason) for e in rolled] == [(vid, "operator")]


def test_the_active_patch_budget_counts_other_targets_only(setting: Setting):
    """A full budget refuses a new target but not a new version of a target already patched."""
    one = QUICK.model_copy(update={"budgets": Budgets(active_patches=1)})
    rollouts = setting.rollouts(one)
    assert rollouts.budget_exceeded(CHECKSUM) is None
    vid = setting.proposed(CHECKSUM, canary_targets.EQUIVALENT)
    rollouts.roll_out(CHECKSUM, vid, rollouts.compile(CHECKSUM, vid), {})
    assert rollouts.budget_exceeded(WEIGH) == 1
    assert rollouts.budget_exceeded(CHECKSUM) is None
    assert rollouts.budget_exceeded(WEIGH, DEFAULT_POLICY) is None  # the policy judged under


def test_versions_awaiting_approval_are_listed_by_id(setting: Setting):
    """awaiting_approval lists proposed versions that passed and wait, and nothing else."""
    rollouts = setting.rollouts()
    waiting = setting.proposed(CHECKSUM, canary_targets.EQUIVALENT)
    setting.ledger.await_approval(waiting, {"speedup": 1.2})
    setting.proposed(WEIGH, canary_targets.EQUIVALENT.replace("checksum", "weigh"))
    assert rollouts.awaiting_approval() == {waiting: CHECKSUM}
    assert rollouts.base_sha(CHECKSUM) == sha256_text(setting.swapper.original_source(CHECKSUM))
    assert rollouts.base_sha("no.such.module:f") is None
