"""Tests for daemon.outcome: a cycle's outcome decided from its candidates' outcomes."""

from __future__ import annotations

import json

from daemon.events import CycleFinished, CycleOutcome
from daemon.outcome import REASON_CHARS, CandidateOutcome, CandidateVerdict, summarize


def outcome(verdict: CandidateVerdict, version: str = "v", stage: str = "",
            reason: str = "") -> CandidateOutcome:
    return CandidateOutcome(version=version, origin="rules:x", verdict=verdict, stage=stage,
                            reason=reason)


def test_a_swap_wins_over_every_other_outcome():
    """One swapped candidate makes the cycle swapped, naming that version, whatever else ran."""
    summary = summarize([outcome(CandidateVerdict.ROLLED_BACK, "a", "canary", "canary_errors"),
                         outcome(CandidateVerdict.SWAPPED, "b")], stopping=True)
    assert (summary.outcome, summary.reason, summary.swapped) == (CycleOutcome.SWAPPED, "", "b")


def test_no_judged_candidate_means_no_candidates():
    """A cycle whose proposals all failed to parse judged nothing: no_candidates, and why."""
    summary = summarize([], stopping=False)
    assert summary.outcome is CycleOutcome.NO_CANDIDATES and summary.swapped is None
    assert "unusable" in summary.reason


def test_a_candidate_waiting_for_approval_makes_the_cycle_pending():
    """A candidate that passed and waits for `selfmod approve` outranks rejections."""
    summary = summarize([outcome(CandidateVerdict.REJECTED, "a", "static", "import"),
                         outcome(CandidateVerdict.PENDING_APPROVAL, "b")], stopping=False)
    assert summary.outcome is CycleOutcome.PENDING
    assert summary.reason == "waiting for `selfmod approve`"


def test_canary_rollbacks_are_named_once_each_in_order():
    """A rolled-back cycle's reason lists each distinct canary reason once, sorted."""
    summary = summarize([outcome(CandidateVerdict.ROLLED_BACK, "a", "canary", "canary_latency"),
                         outcome(CandidateVerdict.ROLLED_BACK, "b", "canary", "canary_errors"),
                         outcome(CandidateVerdict.ROLLED_BACK, "c", "canary", "canary_errors")],
                        stopping=False)
    assert summary.outcome is CycleOutcome.ROLLED_BACK
    assert summary.reason == "canary: canary_errors; canary: canary_latency"


def test_a_stopping_daemon_aborts_a_cycle_that_swapped_nothing():
    """Rejections cut short by a stopping daemon are an aborted cycle, not a rejected one."""
    summary = summarize([outcome(CandidateVerdict.REJECTED, "a", "shadow", "error")],
                        stopping=True)
    assert (summary.outcome, summary.reason) == (CycleOutcome.ABORTED, "daemon stopping")


def test_a_rejected_cycle_names_each_stage_and_reason_within_the_bound():
    """The rejection reason joins distinct "stage: reason" pairs, sorted, cut to the bound."""
    outcomes = [outcome(CandidateVerdict.REJECTED, str(n), "accept", f"reason_{n:03}" * 5)
                for n in range(40)]
    outcomes.append(outcome(CandidateVerdict.REJECTED, "x", "accept", "reason_000" * 5))
    summary = summarize(outcomes, stopping=False)
    assert summary.outcome is CycleOutcome.REJECTED
    assert summary.reason.startswith("accept: reason_000reason_000")
    assert len(summary.reason) == REASON_CHARS


def test_outcomes_read_as_their_plain_strings():
    """Enum outcomes format, compare and serialise exactly as the strings they replaced."""
    event = CycleFinished("m:f", CycleOutcome.NO_CORPUS, 1.0, 0, compute_seconds={"record": 1.0})
    assert event.outcome == "no_corpus" and f"{event.outcome}" == "no_corpus"
    assert json.dumps(event.body()) == json.dumps(
        {"target": "m:f", "outcome": "no_corpus", "seconds": 1.0, "candidates": 0,
         "reason": ""})
    assert json.dumps(CandidateVerdict.PENDING_APPROVAL) == '"pending_approval"'
