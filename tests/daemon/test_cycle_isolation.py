"""A policy that demands an isolation layer the machine lacks: the cycle validates nothing.

The cycle, the ledger, the static gate and the sandbox are real; the isolation is
an :class:`~envelope.isolation.Isolation` value that lacks the layer, as the
daemon's probe reports it on a host where ``unshare`` is refused.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from daemon import events as ev
from daemon.config import CycleConfig
from daemon.cycle import Cycle
from daemon.ledger import Ledger
from daemon.profiler import HotSpot
from daemon.swap import SwapManager
from daemon.synthesis.base import Candidate, ProposalRequest
from envelope.isolation import Isolation, probe_isolation
from envelope.policy import Policy, parse_policy
from envelope.sandbox import Sandbox, SandboxLimits
from invariants.targets import sha256_text
from snapshots import Snapshots
from snapshots.corpus import CallRecord, Corpus, corpus_path, write_corpus
from tests.daemon.fixtures import sample

TARGET = "tests.daemon.fixtures.sample:add"
FASTER = "def add(a, b=2, *, scale=1):\n    return a * scale + b * scale\n"
# Every layer but the ones a test takes away.
FULL = Isolation(network_namespace=True, pid_namespace=True, ipc_namespace=True,
                 mount_namespace=True, readonly_filesystem=True, capabilities_dropped=True,
                 rlimits=True, audit_hook=True)


class OneCandidate:
    """The proposer double: offers one correct rewrite of ``add``."""

    name = "rules"

    def propose(self, request: ProposalRequest) -> list[Candidate]:
        return [Candidate(request.target, FASTER, "rules:test", sha256_text(request.source))]


@pytest.fixture
def snapshots(tmp_path: Path) -> Iterator[Snapshots]:
    store = Snapshots(tmp_path / "state")
    try:
        yield store
    finally:
        store.close()


def run_cycle(snapshots: Snapshots, policy: Policy, isolation: Isolation
              ) -> tuple[Cycle, list[ev.Event], Ledger]:
    swapper = SwapManager()
    base = sha256_text(swapper.original_source(TARGET))
    records = []
    for args in [(1,), (2, 3), (5, 5), (-1, 4), (10, 0), (7, 7)]:
        blob = pickle.dumps((args, {}))
        records.append(CallRecord(blob, "return", pickle.dumps(sample.add(*args)),
                                  args_after_blob=blob))
    write_corpus(corpus_path(snapshots.corpus_dir, TARGET, base),
                 Corpus(TARGET, base, tuple(records)))
    seen: list[ev.Event] = []
    bus = ev.EventBus()
    bus.subscribe(seen.append)
    ledger = Ledger.writer(snapshots)
    cycle = Cycle(
        policy=lambda: policy, ledger=ledger, swapper=swapper, proposers=[OneCandidate()],
        sandbox=lambda p: Sandbox(SandboxLimits(
            require_network_namespace=p.sandbox.require.network_namespace,
            require_mount_namespace=p.sandbox.require.mount_namespace,
            wall_seconds=30), isolation),
        bus=bus, config=CycleConfig(), corpus_root=snapshots.corpus_dir,
        stop=threading.Event())
    return cycle, seen, ledger


def policy_requiring(requirement: str) -> Policy:
    # min_speedup out of reach: a candidate that got through must not be swapped in
    return parse_policy(f"version: 1\nsandbox:\n  require: {{{requirement}: true}}\n"
                        "acceptance: {min_speedup: 1000}\n", "<test>")


@pytest.mark.parametrize(("requirement", "missing", "words"), [
    ("network_namespace", {"network_namespace": False}, "network namespace"),
    ("mount_namespace", {"mount_namespace": False, "readonly_filesystem": False},
     "read-only view of the code"),
], ids=["network", "mount"])
def test_a_required_layer_that_is_missing_rejects_every_candidate_with_the_reason(
        snapshots: Snapshots, requirement: str, missing: dict[str, bool], words: str) -> None:
    """The cycle records a shadow-stage rejection naming the policy key, and swaps nothing."""
    cycle, seen, ledger = run_cycle(snapshots, policy_requiring(requirement),
                                    replace(FULL, **missing))
    report = cycle.run(HotSpot(TARGET, 1.0, 100))
    assert report.outcome == "rejected" and report.swapped is None
    (outcome,) = report.candidates
    assert (outcome.stage, outcome.reason) == ("shadow", "error")
    assert words in outcome.detail and f"sandbox.require.{requirement}" in outcome.detail
    assert outcome.calls == 0  # nothing was replayed
    (event,) = [e for e in seen if isinstance(e, ev.CandidateRejected)]
    assert event.version == outcome.version and words in event.detail
    assert ledger.was_rejected(outcome.version)
    assert "shadow: error" in report.reason


def test_with_the_required_layer_present_the_candidate_is_judged(snapshots: Snapshots) -> None:
    """The same candidate under the same requirement gets a shadow run when the layer exists."""
    isolation = probe_isolation()
    if not isolation.network_namespace:
        pytest.skip("this machine cannot create a network namespace")
    cycle, _seen, _ledger = run_cycle(snapshots, policy_requiring("network_namespace"),
                                      isolation)
    report = cycle.run(HotSpot(TARGET, 1.0, 100))
    (outcome,) = report.candidates
    assert (outcome.stage, outcome.reason) == ("accept", "speedup_below_minimum"), outcome
    assert outcome.calls == 6
