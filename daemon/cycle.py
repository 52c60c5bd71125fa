"""One synthesis cycle for one hot target: record, propose, gate, shadow, accept, store, swap.

Each stage returns a value; a candidate that fails any of them ends with a
recorded reason and the cycle goes on to the next candidate. Nothing a proposer
returns is compiled in this process before it has passed the static gate, the
sandboxed shadow run and the acceptance statistics. An accepted candidate goes
live through :class:`daemon.rollout.Rollouts`, the step the operator's approvals
share; what each candidate and the cycle ended with are the values of
:mod:`daemon.outcome`.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from daemon import events as ev
from daemon.canary import Regressed
from daemon.config import CycleConfig
from daemon.errors import SwapError
from daemon.events import CycleOutcome
from daemon.ledger import Ledger
from daemon.outcome import FINAL, CandidateOutcome, CandidateVerdict, CycleReport, summarize
from daemon.profiler import HotSpot
from daemon.recorder import Recorder, RecordingLimits
from daemon.rollout import Rollouts
from daemon.swap import SwapManager
from daemon.synthesis.base import (
    Candidate,
    DetailedProposer,
    Feedback,
    ProposalRequest,
    Proposer,
    self_correcting,
)
from daemon.target_info import child_sys_path, input_shapes, module_source
from daemon.verification import coverage_evidence, evidence_checks, job_checks, unproven
from envelope.policy import Policy
from envelope.sandbox import Sandbox, ShadowJob
from envelope.static import check_candidate
from invariants.accept import Accepted, decide
from invariants.report import ShadowReport
from invariants.targets import TargetError, sha256_text
from invariants.verdict import Rejected, Stage
from snapshots.corpus import Corpus, CorpusError, corpus_path, read_corpus, write_corpus
from snapshots.found import add_found, found_path

__all__ = ["CandidateOutcome", "Cycle", "CycleReport"]

DETAIL_CHARS = 2000  # evidence kept per rejection, in the ledger, the event and the report
FEEDBACK_ITEMS = 8  # rejections sent back per self-correction round, the latest first


class Cycle:
    """Runs synthesis cycles; owns no thread, the daemon's main loop calls :meth:`run`.

    ``rollouts`` puts accepted candidates live (by default one of its own, with no
    follow-ups: the daemon passes the one its operator routes share).
    """

    def __init__(self, *, policy: Callable[[], Policy], ledger: Ledger, swapper: SwapManager,
                 proposers: Sequence[Proposer], sandbox: Callable[[Policy], Sandbox],
                 bus: ev.EventBus, config: CycleConfig, corpus_root: Path,
                 stop: threading.Event, clock: Callable[[], float] = time.monotonic,
                 rollouts: Rollouts | None = None) -> None:
        self._policy = policy
        self._ledger = ledger
        self._swapper = swapper
        self._proposers = list(proposers)
        self._sandbox = sandbox
        self._bus = bus
        self._config = config
        self._corpus_root = corpus_root
        self._stop = stop
        self._clock = clock
        self._rollouts = rollouts if rollouts is not None else Rollouts(
            swapper, ledger, bus, policy, stop=stop, clock=clock)

    def run(self, spot: HotSpot) -> CycleReport:
        started = self._clock()
        self._bus.publish(ev.CycleStarted(spot.target, spot.share))
        try:
            report = self._run(spot, started)
        except Exception as exc:  # a bug in a stage must not end the daemon
            report = CycleReport(target=spot.target, share=spot.share,
                                 outcome=CycleOutcome.ERROR,
                                 reason=f"{type(exc).__name__}: {exc}",
                                 seconds=self._clock() - started)
        self._bus.publish(ev.CycleFinished(report.target, report.outcome, report.seconds,
                                           len(report.candidates), report.reason,
                                           compute_seconds=dict(report.compute_seconds),
                                           tokens=dict(report.tokens)))
        return report

    def _run(self, spot: HotSpot, started: float) -> CycleReport:
        """The stages in order: load the target, its corpus, then rounds of proposals."""
        policy = self._policy()
        target = spot.target

        def report(outcome: CycleOutcome, reason: str = "", **fields: Any) -> CycleReport:
            return CycleReport(target=target, share=spot.share, outcome=outcome, reason=reason,
                               seconds=self._clock() - started, **fields)

        try:
            func = self._swapper.function(target)
            original = self._swapper.original_source(target)
        except (TargetError, SwapError) as exc:
            return report(CycleOutcome.ERROR, str(exc))
        base_sha = sha256_text(original)
        self._ledger.remember_base(target, base_sha, original)
        current = self._ledger.active_version(target)
        parent = current.id if current is not None else base_sha
        current_source = current.source if current is not None else original

        corpus = self._corpus(target, base_sha, func, policy)
        timings: dict[str, float] = {"record": self._clock() - started}
        if self._stop.is_set():
            return report(CycleOutcome.ABORTED, "daemon stopping", parent=parent)
        calls = len(corpus.records)
        if calls < policy.acceptance.min_calls:
            return report(CycleOutcome.NO_CORPUS, f"recorded {calls} calls, policy needs "
                                                  f"{policy.acceptance.min_calls}",
                          parent=parent, corpus_calls=calls)

        request = ProposalRequest(
            target=target, source=current_source, module_source=module_source(func),
            profile_share=spot.share, input_shapes=input_shapes(corpus),
            allowed_imports=tuple(policy.static.allowed_imports),
            intent=policy.proposers.llm.intent,
        )
        tokens: dict[str, float] = {}
        t0 = self._clock()
        candidates, failed = self._propose(request, self._proposers, tokens)
        timings["propose"] = self._clock() - t0
        if not candidates and not failed:
            return report(CycleOutcome.NO_CANDIDATES, "no proposer had a rewrite", parent=parent,
                          corpus_calls=calls, compute_seconds=timings, tokens=tokens)
        judge = _Judging(original, corpus_path(self._corpus_root, target, base_sha), corpus,
                         policy, live=current.id if current is not None else "")
        outcomes, rounds = self._rounds(request, candidates, failed, judge, timings, tokens)
        summary = summarize(outcomes, stopping=self._stop.is_set())
        return report(summary.outcome, summary.reason, parent=parent,
                      candidates=tuple(outcomes), swapped=summary.swapped, corpus_calls=calls,
                      compute_seconds=timings, tokens=tokens, corrections=rounds)

    def _rounds(self, request: ProposalRequest, candidates: list[Candidate],
                failed: tuple[Feedback, ...], judge: _Judging, timings: dict[str, float],
                tokens: dict[str, float]) -> tuple[list[CandidateOutcome], int]:
        """Judge the candidates; while none is final, send the evidence back and judge again.

        Returns every candidate's outcome and the number of self-correction rounds;
        adds the shadow's seconds (and the corrections' proposal seconds) to ``timings``.
        """
        policy = judge.policy
        outcomes: list[CandidateOutcome] = []
        shadow_total = 0.0
        correcting = [p for p in self._proposers if self_correcting(p)]
        rounds = 0
        while True:
            judged: list[tuple[Candidate, CandidateOutcome]] = []
            passed: list[_Passed] = []
            for candidate in candidates[: self._config.max_candidates]:
                if self._stop.is_set():
                    break
                assessed = self._assess(candidate, judge)
                if isinstance(assessed, _Passed):
                    shadow_total += assessed.outcome.shadow_seconds
                    passed.append(assessed)
                else:
                    shadow_total += assessed.shadow_seconds
                    judged.append((candidate, assessed))
            # n-best: of the candidates that passed, the one proven fastest goes live; if it
            # cannot (its canary regresses, the swap is refused), the next one tries
            passed.sort(key=lambda p: (p.outcome.ci_low or 0.0, p.outcome.speedup or 0.0),
                        reverse=True)
            live: CandidateOutcome | None = None
            for assessed in passed:
                if self._stop.is_set():
                    break  # the rest stay proposed: nothing was decided about them
                if live is None:
                    outcome = self._go_live(assessed.candidate, assessed.outcome,
                                            assessed.evidence, judge, assessed.reject)
                    if outcome.verdict in FINAL:
                        live = outcome
                else:
                    best = live
                    outcome = assessed.reject(
                        "accept", "outperformed",
                        f"accepted at {assessed.outcome.speedup:.3g}x "
                        f"(lower bound {assessed.outcome.ci_low:.3g}x), but another candidate "
                        f"of the same request was proven faster ({best.speedup:.3g}x, "
                        f"lower bound {best.ci_low:.3g}x)",
                        assessed.outcome.shadow_seconds, calls=assessed.outcome.calls)
                judged.append((assessed.candidate, outcome))
            outcomes.extend(o for _, o in judged)
            done = any(o.verdict in FINAL for _, o in judged)
            if rounds:
                self._bus.publish(ev.SelfCorrection(request.target, rounds,
                                                    len(request.feedback),
                                                    "accepted" if done else "rejected"))
            feedback = failed + tuple(
                Feedback(c.source, o.stage, o.reason, o.detail) for c, o in judged
                if o.verdict in (CandidateVerdict.REJECTED, CandidateVerdict.ROLLED_BACK)
                and o.reason != "outperformed" and c.origin.startswith("llm:"))
            if done or self._stop.is_set() or not correcting or not feedback or \
                    rounds >= policy.proposers.llm.max_corrections:
                break
            # self-correction: send the evidence back and judge the corrected candidates
            rounds += 1
            request = dataclasses.replace(request, feedback=feedback[-FEEDBACK_ITEMS:])
            t0 = self._clock()
            candidates, failed = self._propose(request, correcting, tokens)
            timings["propose"] += self._clock() - t0
        timings["shadow"] = shadow_total
        return outcomes, rounds

    # -- stages -----------------------------------------------------------------------

    def _corpus(self, target: str, base_sha: str, func: Any, policy: Policy) -> Corpus:
        """Reuse the stored corpus for this base when it is large enough, else record one."""
        path = corpus_path(self._corpus_root, target, base_sha)
        if path.exists():
            try:
                stored = read_corpus(path)
                if len(stored.records) >= policy.acceptance.min_calls:
                    return stored
            except CorpusError:
                pass
        limits = RecordingLimits(
            calls=policy.recording.calls, max_record_bytes=policy.recording.max_record_bytes,
            max_corpus_bytes=policy.recording.max_corpus_bytes,
            timeout_seconds=policy.recording.timeout_seconds)
        recording = Recorder(target, base_sha, func, limits,
                             probe_lock=self._swapper.lock).record(self._stop)
        self._bus.publish(ev.CorpusRecorded(target, len(recording.corpus.records),
                                            recording.skipped))
        if recording.corpus.records:
            write_corpus(path, recording.corpus)
        return recording.corpus

    def _propose(self, request: ProposalRequest, proposers: Sequence[Proposer],
                 tokens: dict[str, float]) -> tuple[list[Candidate], tuple[Feedback, ...]]:
        """New candidates from ``proposers``, and the feedback from samples that did not parse."""
        seen: set[str] = set()
        out: list[Candidate] = []
        failed: list[Feedback] = []
        for proposer in proposers:
            try:
                proposed = self._ask(proposer, request, failed, tokens)
            except Exception as exc:  # a proposer bug is a proposer with nothing to offer
                self._bus.publish(ev.ProposerFailed(request.target, proposer.name,
                                                    f"{type(exc).__name__}: {exc}"))
                continue
            for candidate in proposed:
                vid = sha256_text(candidate.source)
                if vid in seen or candidate.source == request.source or \
                        self._ledger.was_rejected(vid):
                    continue
                seen.add(vid)
                out.append(candidate)
        return out, tuple(failed)

    def _ask(self, proposer: Proposer, request: ProposalRequest, failed: list[Feedback],
             tokens: dict[str, float]) -> list[Candidate]:
        """Candidates from one proposer; samples a model got wrong are recorded as rejections."""
        if not isinstance(proposer, DetailedProposer):
            return proposer.propose(request)
        proposal = proposer.propose_detailed(request)
        for key in ("prompt_tokens", "completion_tokens"):
            tokens[key] = tokens.get(key, 0.0) + float(proposal.cost.get(key, 0.0))
        for failure in proposal.failures:
            self._bus.publish(ev.CandidateRejected(
                request.target, sha256_text(failure.excerpt), proposer.origin, "parse",
                failure.reason, failure.detail[:DETAIL_CHARS]))
            failed.append(Feedback(failure.excerpt, "parse", failure.reason, failure.detail))
        if proposal.error is not None:
            self._bus.publish(ev.ProposerFailed(request.target, proposer.name,
                                                f"{type(proposal.error).__name__}: "
                                                f"{proposal.error}"))
        return list(proposal.candidates)

    def _assess(self, candidate: Candidate, judging: _Judging) -> CandidateOutcome | _Passed:
        """Gate, shadow and accept one candidate: its rejection, or what passed for go-live."""
        target, policy = candidate.target, judging.policy
        version = self._ledger.propose(candidate, sha256_text(judging.original))
        self._bus.publish(ev.CandidateProposed(target, version, candidate.origin,
                                               candidate.parent))
        reject = _Rejecter(self._ledger, self._bus, candidate, version)

        gate = check_candidate(candidate.source, judging.original, policy.static)
        if isinstance(gate, Rejected):
            return reject(gate.stage, gate.reason,
                          f"line {gate.line}:{gate.col}: {gate.detail}")

        checks = job_checks(policy, target)
        if candidate.keeps_original and policy.verification.trust_rule_rewrites:
            checks.update(symbolic_seconds=0.0, memoise=True)  # no diff, no state watch
        job = ShadowJob(target=target, candidate_source=candidate.source,
                        corpus_path=str(judging.corpus_file), sys_path=child_sys_path(target),
                        found_path=str(found_path(self._corpus_root, target)),
                        original_coverage=candidate.keeps_original,
                        bench_calls=self._config.bench_calls,
                        min_sample_seconds=self._config.min_sample_seconds,
                        **checks)
        report: ShadowReport = self._sandbox(policy).run(job)
        self._keep_found(target, version, report)
        gap = unproven(report, candidate, judging.original)
        reject.evidence = {"coverage": coverage_evidence(report, gap)}
        reject.phases = dict(report.phases)
        if report.status == "ok" and gap is not None and \
                policy.verification.coverage_required(target):
            return reject(Stage.SHADOW, "unproven", gap.describe(), report.duration,
                          calls=report.calls)
        verdict = decide(report, policy.acceptance.min_speedup,
                         confidence=policy.acceptance.confidence,
                         min_calls=policy.acceptance.min_calls)
        if not isinstance(verdict, Accepted):
            detail = verdict.detail
            if verdict.reason == "counterexample" and gap is not None:
                detail = f"{detail}\nwhere it differs, {gap.describe()}"
            return reject(verdict.stage, verdict.reason, detail, report.duration,
                          calls=report.calls)
        self._bus.publish(ev.CandidateAccepted(target, version, candidate.origin,
                                               verdict.speedup, verdict.ci_low, verdict.ci_high,
                                               verdict.calls,
                                               gap.describe() if gap is not None else ""))
        evidence = {"speedup": verdict.speedup, "ci_low": verdict.ci_low,
                    "ci_high": verdict.ci_high, "calls": verdict.calls,
                    "samples": verdict.samples,
                    **evidence_checks(report.checks, len(job.invariants)),
                    "coverage": coverage_evidence(report, gap)}
        accepted = CandidateOutcome(version=version, origin=candidate.origin,
                                    verdict=CandidateVerdict.ACCEPTED, speedup=verdict.speedup,
                                    ci_low=verdict.ci_low, ci_high=verdict.ci_high,
                                    calls=verdict.calls, shadow_seconds=report.duration,
                                    shadow_phases=dict(report.phases))
        return _Passed(candidate, accepted, evidence, reject)

    def _keep_found(self, target: str, version: str, report: ShadowReport) -> None:
        """Keep the inputs the shadow found for the target's next candidates."""
        if not report.found:
            return
        try:
            added = add_found(found_path(self._corpus_root, target), target, report.found)
        except OSError as exc:  # a help for later candidates, never a reason to stop
            self._bus.publish(ev.InputsFound(target, version, 0, f"not kept: {exc}"))
            return
        if added:
            self._bus.publish(ev.InputsFound(target, version, added))

    def _go_live(self, candidate: Candidate, accepted: CandidateOutcome,
                 evidence: dict[str, Any], judging: _Judging,
                 reject: _Rejecter) -> CandidateOutcome:
        """Put an accepted candidate live through the rollouts, or leave it for approval."""
        target, version, policy = candidate.target, accepted.version, judging.policy
        if policy.needs_approval(target):
            self._ledger.await_approval(version, evidence)
            return _replace(accepted, verdict=CandidateVerdict.PENDING_APPROVAL)
        if self._rollouts.budget_exceeded(target, policy) is not None:
            return reject("policy", "active_patches_budget",
                          f"{policy.budgets.active_patches} patches already active")
        try:
            code = self._rollouts.compile(target, version, candidate.source)
            rollout = self._rollouts.roll_out(target, version, code, evidence,
                                              expect_live=judging.live, policy=policy)
        except SwapError as exc:
            return reject("swap", "not_installable", str(exc))
        if rollout.installed is None:
            if self._stop.is_set():
                return accepted
            return reject("swap", "live_code_changed", rollout.refused)
        if isinstance(rollout.verdict, Regressed):
            return _replace(accepted, verdict=CandidateVerdict.ROLLED_BACK, stage="canary",
                            reason=rollout.verdict.reason,
                            detail=rollout.verdict.detail[:DETAIL_CHARS])
        return _replace(accepted, verdict=CandidateVerdict.SWAPPED)


@dataclasses.dataclass(frozen=True)
class _Passed:
    """A candidate that passed the gate, the shadow and the statistics, not yet live."""

    candidate: Candidate
    outcome: CandidateOutcome
    evidence: dict[str, Any]
    reject: _Rejecter


@dataclasses.dataclass(frozen=True)
class _Judging:
    """What every candidate of one cycle is judged against."""

    original: str  # the target's original source
    corpus_file: Path
    corpus: Corpus
    policy: Policy
    live: str  # the version the candidates were made from ("": the original code)


class _Rejecter:
    """Records one candidate's rejection: in the ledger, as an event, as its outcome."""

    def __init__(self, ledger: Ledger, bus: ev.EventBus, candidate: Candidate,
                 version: str) -> None:
        self._ledger = ledger
        self._bus = bus
        self._candidate = candidate
        self._version = version
        self.evidence: dict[str, Any] = {}  # what the shadow measured, once it has run
        self.phases: dict[str, float] = {}  # where the shadow's time went

    def __call__(self, stage: str, reason: str, detail: str = "", shadow_seconds: float = 0.0,
                 calls: int = 0) -> CandidateOutcome:
        self._ledger.reject(self._version, stage, reason, detail,  # the whole evidence
                            extra=self.evidence)
        self._bus.publish(ev.CandidateRejected(self._candidate.target, self._version,
                                               self._candidate.origin, stage, reason,
                                               detail[:DETAIL_CHARS]))
        return CandidateOutcome(version=self._version, origin=self._candidate.origin,
                                verdict=CandidateVerdict.REJECTED, stage=stage, reason=reason,
                                detail=detail[:DETAIL_CHARS], calls=calls,
                                shadow_seconds=shadow_seconds, shadow_phases=self.phases)


def _replace(outcome: CandidateOutcome, **changes: Any) -> CandidateOutcome:
    return dataclasses.replace(outcome, **changes)
