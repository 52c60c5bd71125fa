"""Tests for daemon.operator: the control routes, on a rollout service and a status snapshot."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import events as ev
from daemon.ledger import Ledger
from daemon.logs import get_logger
from daemon.operator import Operator
from daemon.rollout import Followups, Rollouts
from daemon.status import StatusSnapshot
from daemon.swap import SwapManager
from daemon.synthesis.base import Candidate
from envelope.policy import DEFAULT_POLICY, Approval, Budgets, Policy
from envelope.policy import Canary as CanaryPolicy
from invariants.targets import sha256_text
from snapshots import Snapshots
from snapshots.versions import VersionStatus
from tests.daemon.fixtures import canary_targets

CHECKSUM = "tests.daemon.fixtures.canary_targets:checksum"
WEIGH = "tests.daemon.fixtures.canary_targets:weigh"
POLICY = DEFAULT_POLICY.model_copy(update={"canary": CanaryPolicy(calls=50, seconds=0.4),
                                           "budgets": Budgets(active_patches=1)})
SNAPSHOT = StatusSnapshot(state_dir="/state", paused=False, halted="", budget_halt="",
                          isolation={"seccomp": True}, policy={"version": 1}, cycles=3,
                          uptime_seconds=9.0)


class Bench:
    """An operator over real rollouts, with the follow-ups it caused."""

    def __init__(self, tmp_path: Path, policy: Policy | None = None) -> None:
        self.swapper = SwapManager()
        self.snapshots = Snapshots(tmp_path / "state")
        self.ledger = Ledger.writer(self.snapshots)
        self.refused: list[str] = []
        self.scope = {CHECKSUM, WEIGH}
        self.paused = threading.Event()
        self.rollouts = Rollouts(self.swapper, self.ledger, ev.EventBus(),
                                 lambda: policy or POLICY,
                                 stop=threading.Event(),
                                 followups=Followups(refused=self.refused.append))
        self.operator = Operator(paused=self.paused, status=lambda: SNAPSHOT,
                                 rollouts=self.rollouts, in_scope=self.scope.__contains__,
                                 log=get_logger())
        self.routes = self.operator.routes()

    def version(self, target: str, source: str, *, awaiting: bool = True) -> str:
        base = sha256_text(self.swapper.original_source(target))
        vid = self.ledger.propose(Candidate(target, source, "test:seeded", base), base)
        if awaiting:
            self.ledger.await_approval(vid, {"speedup": 1.2})
        return vid

    def approve(self, vid: str) -> tuple[int, dict[str, object]]:
        answer = self.routes[("POST", "/approve")]({"id": vid})
        self.operator.join(10)
        return answer


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    setting = Bench(tmp_path)
    yield setting
    setting.operator.join(10)
    setting.swapper.rollback_all()
    setting.snapshots.close()


def test_status_is_the_snapshot_plus_the_live_versions_and_approvals(bench: Bench):
    """GET /status answers the snapshot's fields with the active and waiting versions."""
    vid = bench.version(CHECKSUM, canary_targets.EQUIVALENT)
    status, body = bench.routes[("GET", "/status")]({})
    assert status == 200 and body["running"] is True and body["pid"] == os.getpid()
    assert body["cycles"] == 3 and body["isolation"] == {"seccomp": True}
    assert body["awaiting_approval"] == {vid: CHECKSUM} and body["approving"] == {}
    assert body["active"] == {}


def test_pause_and_resume_flip_the_flag(bench: Bench):
    """POST /pause and /resume set and clear the daemon's paused flag."""
    assert bench.routes[("POST", "/pause")]({}) == (200, {"paused": True})
    assert bench.paused.is_set()
    assert bench.routes[("POST", "/resume")]({}) == (200, {"paused": False})
    assert not bench.paused.is_set()


def test_an_approved_version_goes_live_behind_its_canary(bench: Bench):
    """approve answers 202 at once and the version is active once its canary is done."""
    vid = bench.version(CHECKSUM, canary_targets.EQUIVALENT)
    status, body = bench.approve(vid[:12])
    assert status == 202 and body["approved"] == vid and body["target"] == CHECKSUM
    assert bench.swapper.active()[CHECKSUM].version == vid
    assert bench.ledger.state.load().versions[vid].status is VersionStatus.ACTIVE


@pytest.mark.parametrize(("case", "status", "words"), [
    ("unknown", 404, "no version"),
    ("not_waiting", 409, "not awaiting approval"),
    ("out_of_scope", 409, "no longer in the policy's scope"),
    ("over_budget", 409, "patches are already active"),
])
def test_approve_refuses_what_may_not_go_live(bench: Bench, case: str, status: int, words: str):
    """approve answers 4xx with a sentence for versions it must not install."""
    vid = bench.version(CHECKSUM, canary_targets.EQUIVALENT, awaiting=case != "not_waiting")
    if case == "unknown":
        vid = "f" * 64
    elif case == "out_of_scope":
        bench.scope.clear()
    elif case == "over_budget":
        live = bench.version(WEIGH, canary_targets.EQUIVALENT.replace("checksum", "weigh"))
        assert bench.approve(live)[0] == 202
    answer, body = bench.approve(vid)
    assert answer == status and words in str(body["error"]).lower(), body
    assert CHECKSUM not in bench.swapper.active()


def test_rollback_takes_the_live_version_out_and_is_refused_from_then_on(bench: Bench):
    """POST /rollback restores the original code, tells the rollouts' `refused` follow-up and
    (approval.rollback_excludes, on by default) keeps the target excluded."""
    vid = bench.version(CHECKSUM, canary_targets.EQUIVALENT)
    bench.approve(vid)
    status, body = bench.routes[("POST", "/rollback")]({"id": vid[:10]})
    assert (status, body) == (200, {"rolled_back": vid, "target": CHECKSUM, "restored": "",
                                    "excluded": True})
    assert bench.swapper.active() == {} and bench.refused == [CHECKSUM]
    assert bench.routes[("GET", "/status")]({})[1]["excluded"][CHECKSUM]["by"] == "rollback"
    assert bench.routes[("POST", "/rollback")]({"id": vid[:10]})[0] == 404
    assert bench.routes[("POST", "/rollback")]({})[0] == 400


def test_a_policy_can_let_a_rolled_back_target_be_tried_again(tmp_path: Path) -> None:
    """approval.rollback_excludes: false takes the version out and excludes nothing."""
    policy = POLICY.model_copy(update={"approval": Approval(rollback_excludes=False)})
    bench = Bench(tmp_path, policy)
    try:
        vid = bench.version(CHECKSUM, canary_targets.EQUIVALENT)
        bench.approve(vid)
        status, body = bench.routes[("POST", "/rollback")]({"id": vid[:10]})
        assert status == 200 and body["excluded"] is False
        assert bench.rollouts.excluded() == {} and bench.ledger.excluded() == {}
    finally:
        bench.operator.join(10)
        bench.swapper.rollback_all()
        bench.snapshots.close()
