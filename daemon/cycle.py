"""One synthesis cycle for one hot target: record, propose, gate, shadow, accept, store, swap.

Each stage returns a value; a candidate that fails any of them ends with a
recorded reason and the cycle goes on to the next candidate. Nothing a proposer
returns is compiled in this process before it has passed the static gate, the
sandboxed shadow run and the acceptance statistics.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon import events as ev
from daemon.canary import Canary, CanaryLimits, Regressed, is_pure
from daemon.config import CycleConfig
from daemon.errors import SwapError
from daemon.ledger import Ledger
from daemon.profiler import HotSpot
from daemon.recorder import Recorder, RecordingLimits
from daemon.swap import SwapManager
from daemon.synthesis.base import Candidate, Feedback, ProposalRequest, Proposer
from daemon.verification import evidence_checks, job_checks
from envelope.policy import Policy
from envelope.sandbox import Sandbox, ShadowJob
from envelope.static import Rejected as StaticRejected
from envelope.static import check_candidate
from invariants.accept import Accepted, decide
from invariants.report import ShadowReport
from invariants.targets import TargetError, sha256_text
from snapshots.corpus import Corpus, CorpusError, corpus_path, read_corpus, write_corpus


@dataclass(frozen=True)
class CandidateOutcome:
    """What became of one candidate in a cycle."""

    version: str
    origin: str
    verdict: str  # swapped | accepted | rejected | pending_approval | rolled_back (by the canary)
    stage: str = ""
    reason: str = ""
    detail: str = ""
    speedup: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    calls: int = 0
    shadow_seconds: float = 0.0


@dataclass(frozen=True)
class CycleReport:
    """The result of one cycle: the target, every candidate's fate, and the outcome."""

    target: str
    share: float
    outcome: str  # swapped | rejected | rolled_back | no_candidates | no_corpus | error | aborted
    #               | pending
    reason: str = ""
    parent: str = ""
    seconds: float = 0.0
    candidates: tuple[CandidateOutcome, ...] = ()
    swapped: str | None = None
    corpus_calls: int = 0
    compute_seconds: dict[str, float] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)  # prompt_tokens, completion_tokens
    corrections: int = 0  # self-correction rounds


class Cycle:
    """Runs synthesis cycles; owns no thread, the daemon's main loop calls :meth:`run`."""

    def __init__(self, *, policy: Callable[[], Policy], ledger: Ledger, swapper: SwapManager,
                 proposers: Sequence[Proposer], sandbox: Callable[[Policy], Sandbox],
                 bus: ev.EventBus, config: CycleConfig, corpus_root: Path,
                 stop: threading.Event, clock: Callable[[], float] = time.monotonic) -> None:
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

    def run(self, spot: HotSpot) -> CycleReport:
        started = self._clock()
        self._bus.publish(ev.CycleStarted(spot.target, spot.share))
        try:
            report = self._run(spot, started)
        except Exception as exc:  # a bug in a stage must not end the daemon
            report = CycleReport(spot.target, spot.share, "error",
                                 f"{type(exc).__name__}: {exc}",
                                 seconds=self._clock() - started)
        self._bus.publish(ev.CycleFinished(report.target, report.outcome, report.seconds,
                                           len(report.candidates), report.reason))
        return report

    def _run(self, spot: HotSpot, started: float) -> CycleReport:
        policy = self._policy()
        target = spot.target
        try:
            func = self._swapper.function(target)
            original = self._swapper.original_source(target)
        except (TargetError, SwapError) as exc:
            return CycleReport(target, spot.share, "error", str(exc),
                               seconds=self._clock() - started)
        base_sha = sha256_text(original)
        self._ledger.remember_base(target, base_sha, original)
        current = self._ledger.active_version(target)
        parent = current.id if current is not None else base_sha
        current_source = current.source if current is not None else original

        corpus = self._corpus(target, base_sha, func, policy)
        timings: dict[str, float] = {"record": self._clock() - started}
        if self._stop.is_set():
            return CycleReport(target, spot.share, "aborted", "daemon stopping", parent,
                               self._clock() - started)
        if len(corpus.records) < policy.acceptance.min_calls:
            return CycleReport(target, spot.share, "no_corpus",
                               f"recorded {len(corpus.records)} calls, policy needs "
                               f"{policy.acceptance.min_calls}", parent,
                               self._clock() - started, corpus_calls=len(corpus.records))
        path = corpus_path(self._corpus_root, target, base_sha)

        request = ProposalRequest(
            target=target, source=current_source, module_source=_module_source(func),
            profile_share=spot.share, input_shapes=_shapes(corpus),
            allowed_imports=tuple(policy.static.allowed_imports),
            intent=policy.proposers.llm.intent,
        )
        outcomes: list[CandidateOutcome] = []
        tokens: dict[str, float] = {}
        t0 = self._clock()
        candidates, failed = self._propose(request, self._proposers, tokens)
        timings["propose"] = self._clock() - t0
        if not candidates and not failed:
            return CycleReport(target, spot.share, "no_candidates", "no proposer had a rewrite",
                               parent, self._clock() - started, corpus_calls=len(corpus.records),
                               compute_seconds=timings, tokens=tokens)
        shadow_total = 0.0
        correcting = [p for p in self._proposers if p.name == "llm"]
        rounds = 0
        while True:
            judged = []
            for candidate in candidates[: self._config.max_candidates]:
                if self._stop.is_set():
                    break
                outcome = self._judge(candidate, original, path, corpus, policy,
                                      live=current.id if current is not None else "")
                shadow_total += outcome.shadow_seconds
                judged.append((candidate, outcome))
                if outcome.verdict in ("swapped", "pending_approval"):
                    break
            outcomes.extend(o for _, o in judged)
            done = any(o.verdict in ("swapped", "pending_approval") for _, o in judged)
            if rounds:
                self._bus.publish(ev.SelfCorrection(target, rounds, len(request.feedback),
                                                    "accepted" if done else "rejected"))
            feedback = failed + tuple(Feedback(c.source, o.stage, o.reason, o.detail)
                                      for c, o in judged
                                      if o.verdict in ("rejected", "rolled_back")
                                      and c.origin.startswith("llm:"))
            if done or self._stop.is_set() or not correcting or not feedback or \
                    rounds >= policy.proposers.llm.max_corrections:
                break
            # self-correction: send the evidence back and judge the corrected candidates
            rounds += 1
            request = dataclasses.replace(request, feedback=feedback[-8:])
            t0 = self._clock()
            candidates, failed = self._propose(request, correcting, tokens)
            timings["propose"] += self._clock() - t0
        timings["shadow"] = shadow_total
        swapped = next((o.version for o in outcomes if o.verdict == "swapped"), None)
        pending = any(o.verdict == "pending_approval" for o in outcomes)
        if swapped:
            result, reason = "swapped", ""
        elif not outcomes:
            result, reason = "no_candidates", "every proposal was unusable (see parse rejections)"
        elif pending:
            result, reason = "pending", "waiting for `selfmod approve`"
        elif any(o.verdict == "rolled_back" for o in outcomes):
            result = "rolled_back"
            reason = "; ".join(sorted({f"canary: {o.reason}" for o in outcomes
                                       if o.verdict == "rolled_back"}))
        elif self._stop.is_set():
            result, reason = "aborted", "daemon stopping"
        else:
            result = "rejected"
            reason = "; ".join(sorted({f"{o.stage}: {o.reason}" for o in outcomes}))[:500]
        return CycleReport(target, spot.share, result, reason, parent, self._clock() - started,
                           tuple(outcomes), swapped, len(corpus.records), timings, tokens, rounds)

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
        detailed = getattr(proposer, "propose_detailed", None)
        if detailed is None:
            return proposer.propose(request)
        proposal = detailed(request)
        origin = getattr(proposer, "origin", proposer.name)
        for key in ("prompt_tokens", "completion_tokens"):
            tokens[key] = tokens.get(key, 0.0) + float(proposal.cost.get(key, 0.0))
        for failure in proposal.failures:
            self._bus.publish(ev.CandidateRejected(
                request.target, sha256_text(failure.excerpt), origin, "parse", failure.reason,
                failure.detail[:2000]))
            failed.append(Feedback(failure.excerpt, "parse", failure.reason, failure.detail))
        if proposal.error is not None:
            self._bus.publish(ev.ProposerFailed(request.target, proposer.name,
                                                f"{type(proposal.error).__name__}: "
                                                f"{proposal.error}"))
        return list(proposal.candidates)

    def _judge(self, candidate: Candidate, original: str, corpus_file: Path, corpus: Corpus,
               policy: Policy, live: str) -> CandidateOutcome:
        """Gate, shadow, accept and roll out one candidate made from ``live`` ("": original)."""
        target = candidate.target
        version = self._ledger.propose(candidate, sha256_text(original))
        self._bus.publish(ev.CandidateProposed(target, version, candidate.origin,
                                               candidate.parent))

        def reject(stage: str, reason: str, detail: str = "",
                   shadow_seconds: float = 0.0, **extra: Any) -> CandidateOutcome:
            self._ledger.reject(version, stage, reason, detail)
            self._bus.publish(ev.CandidateRejected(target, version, candidate.origin, stage,
                                                   reason, detail[:2000]))
            return CandidateOutcome(version, candidate.origin, "rejected", stage, reason,
                                    detail[:2000], shadow_seconds=shadow_seconds, **extra)

        gate = check_candidate(candidate.source, original, policy.static)
        if isinstance(gate, StaticRejected):
            return reject("static", gate.rule, f"line {gate.line}:{gate.col}: {gate.reason}")

        job = ShadowJob(target=target, candidate_source=candidate.source,
                        corpus_path=str(corpus_file), sys_path=_child_sys_path(target),
                        repeats=policy.acceptance.repeats,
                        bench_calls=self._config.bench_calls,
                        min_sample_seconds=self._config.min_sample_seconds,
                        **job_checks(policy, target))
        report: ShadowReport = self._sandbox(policy).run(job)
        verdict = decide(report, policy.acceptance.min_speedup,
                         confidence=policy.acceptance.confidence,
                         min_calls=policy.acceptance.min_calls)
        if not isinstance(verdict, Accepted):
            return reject(verdict.stage, verdict.reason, verdict.detail, report.duration,
                          calls=report.calls)
        self._bus.publish(ev.CandidateAccepted(target, version, candidate.origin,
                                               verdict.speedup, verdict.ci_low, verdict.ci_high,
                                               verdict.calls))
        evidence = {"speedup": verdict.speedup, "ci_low": verdict.ci_low,
                    "ci_high": verdict.ci_high, "calls": verdict.calls,
                    "samples": verdict.samples,
                    **evidence_checks(report.checks, len(job.invariants))}
        accepted = CandidateOutcome(version, candidate.origin, "accepted", "", "", "",
                                    verdict.speedup, verdict.ci_low, verdict.ci_high,
                                    verdict.calls, report.duration)
        if policy.needs_approval(target):
            self._ledger.await_approval(version, evidence)
            return _replace(accepted, verdict="pending_approval")
        if len(self._swapper.active()) >= policy.budgets.active_patches and \
                target not in self._swapper.active():
            return reject("policy", "active_patches_budget",
                          f"{policy.budgets.active_patches} patches already active")
        try:
            code = self._swapper.compile(target, candidate.source, version)
        except SwapError as exc:
            return reject("swap", "not_installable", str(exc))
        canary = Canary(self._swapper, self._ledger, self._bus,
                        CanaryLimits.from_policy(policy.canary),
                        pure=is_pure(target, policy.invariants.pure), stop=self._stop,
                        clock=self._clock)
        try:
            rollout = canary.roll_out(target, version, code, evidence, expect_live=live)
        except SwapError as exc:
            return reject("swap", "not_installable", str(exc))
        if rollout.installed is None:
            if self._stop.is_set():
                return accepted
            return reject("swap", "live_code_changed", rollout.refused)
        if isinstance(rollout.verdict, Regressed):
            return _replace(accepted, verdict="rolled_back", stage="canary",
                            reason=rollout.verdict.reason,
                            detail=rollout.verdict.detail[:2000])
        return _replace(accepted, verdict="swapped")


def _replace(outcome: CandidateOutcome, **changes: Any) -> CandidateOutcome:
    return dataclasses.replace(outcome, **changes)


def _module_source(func: Any) -> str:
    import inspect

    try:
        module = inspect.getmodule(func)
        return inspect.getsource(module) if module is not None else ""
    except (OSError, TypeError):
        return ""


def _shapes(corpus: Corpus, limit: int = 3) -> tuple[str, ...]:
    shapes = []
    for record in corpus.records[:limit]:
        try:
            args, kwargs = record.load_args()
        except Exception:
            continue
        shapes.append(_shape((args, kwargs)))
    return tuple(shapes)


def _shape(value: Any, depth: int = 0) -> str:
    if depth > 2:
        return "…"
    if isinstance(value, (list, tuple, set, frozenset)):
        kind = type(value).__name__
        inner = _shape(next(iter(value)), depth + 1) if value else ""
        return f"{kind}[{len(value)}]({inner})"
    if isinstance(value, dict):
        if not value:
            return "dict[0]"
        key, val = next(iter(value.items()))
        return f"dict[{len(value)}]({_shape(key, depth + 1)}: {_shape(val, depth + 1)})"
    return type(value).__name__


def _child_sys_path(target: str) -> tuple[str, ...]:
    """Import roots the shadow needs: the target module's root, then the daemon's own path."""
    module = sys.modules.get(target.partition(":")[0])
    roots: list[str] = []
    file = getattr(module, "__file__", None)
    if module is not None and file:
        depth = module.__name__.count(".") + (1 if file.endswith("__init__.py") else 0)
        roots.append(str(Path(file).resolve().parents[depth]))
    roots.extend(p for p in sys.path if p and Path(p).is_dir() and p not in roots)
    return tuple(roots)
