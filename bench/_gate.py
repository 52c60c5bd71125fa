"""The real gate for benchmarks: corpora recorded from the demo, then static gate, shadow, decide.

:func:`record_demo_corpora` runs :class:`demo.workload.DemoWorkload` and
records each target with :class:`daemon.recorder.Recorder`, the way
``daemon.cycle.Cycle._corpus`` does, into a corpus directory. :class:`Gate` puts
one candidate through what ``Cycle._judge`` does before storing a version:
:func:`envelope.static.check_candidate`, a :class:`envelope.sandbox.Sandbox` run
with the job the cycle builds from the policy, the coverage gate
(:func:`daemon.verification.unproven`, where the policy requires full coverage) and
:func:`invariants.accept.decide`.

:func:`without_new_steps` is the policy with the proof-coverage steps turned off
(coverage gate, symbolic diff, state watch, input search), to measure what they add.
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench._common import ROOT, progress
from daemon.config import CycleConfig
from daemon.recorder import Recorder, RecordingLimits
from daemon.synthesis.base import Candidate
from daemon.verification import job_checks, unproven
from demo import logstats
from demo.workload import DemoWorkload
from envelope.isolation import Isolation, probe_isolation
from envelope.policy import Policy, load_policy
from envelope.sandbox import Sandbox, SandboxLimits, ShadowJob
from envelope.static import check_candidate
from invariants.accept import Accepted, decide
from invariants.report import ShadowReport
from invariants.targets import original_source, sha256_text
from invariants.verdict import Rejected
from snapshots.corpus import Corpus, corpus_path, write_corpus

POLICY_FILE = ROOT / "config" / "envelope.yaml"


def demo_targets() -> dict[str, Any]:
    """``module:qualname`` -> function, for every function of the demo's logstats module."""
    return {f"{logstats.__name__}:{name}": fn
            for name, fn in inspect.getmembers(logstats, inspect.isfunction)
            if fn.__module__ == logstats.__name__}


def record_demo_corpora(name: str, root: Path, policy: Policy, *, batch_size: int,
                        pool_size: int, seconds_per_target: float = 10.0
                        ) -> dict[str, Corpus]:
    """Record every demo target from a running demo workload; corpora are also written below
    ``root`` in the daemon's layout."""
    workload = DemoWorkload(seed=0, batch_size=batch_size, pool_size=pool_size,
                            oracle_every=10**9)
    corpora: dict[str, Corpus] = {}
    stop = threading.Event()
    workload.start()
    try:
        for target, fn in demo_targets().items():
            base = sha256_text(original_source(fn))
            limits = RecordingLimits.from_policy(
                policy.recording,
                timeout_seconds=min(policy.recording.timeout_seconds, seconds_per_target))
            recording = Recorder(target, base, fn, limits).record(stop)
            corpora[target] = recording.corpus
            write_corpus(corpus_path(root, target, base), recording.corpus)
            progress(name, f"recorded {len(recording.corpus.records)} calls of {target}")
    finally:
        workload.stop()
        workload.join(10)
    return corpora


@dataclass(frozen=True)
class Verdict:
    """What the gate did with one candidate."""

    rejected: bool
    stage: str  # static | shadow | accept | accepted
    reason: str
    caught_by: str  # static | differential | property | invariant | hash_seed | <status> | speed
    detail: str = ""
    report: ShadowReport | None = None


class Gate:
    """The static gate, the sandboxed shadow and the acceptance decision, as the cycle runs them."""

    def __init__(self, policy: Policy, corpus_root: Path, tmp_root: Path,
                 isolation: Isolation | None = None, **job_overrides: Any) -> None:
        self.policy = policy
        self.corpus_root = corpus_root
        self.cycle = CycleConfig()
        self.sandbox = Sandbox(
            SandboxLimits.from_policy(policy.sandbox),
            isolation if isolation is not None else probe_isolation(), tmp_root=tmp_root)
        self.job_overrides = job_overrides

    def job(self, target: str, source: str, original: str) -> ShadowJob:
        path = corpus_path(self.corpus_root, target, sha256_text(original))
        job = ShadowJob(target=target, candidate_source=source, corpus_path=str(path),
                        sys_path=(str(ROOT),),
                        bench_calls=self.cycle.bench_calls,
                        min_sample_seconds=self.cycle.min_sample_seconds,
                        **job_checks(self.policy, target))
        return replace(job, **self.job_overrides)

    def shadow(self, target: str, source: str, original: str) -> ShadowReport:
        return self.sandbox.run(self.job(target, source, original))

    def judge(self, target: str, source: str, original: str,
              min_speedup: float | None = None, *, keeps_original: bool = False) -> Verdict:
        """The daemon's order: static gate, shadow, coverage gate, acceptance.

        ``keeps_original`` is what a rule's candidate states (see
        :class:`daemon.synthesis.base.Candidate`); a mutant is no rule's output.
        """
        gate = check_candidate(source, original, self.policy.static)
        if isinstance(gate, Rejected):
            return Verdict(True, "static", gate.reason, "static", gate.detail)
        report = self.shadow(target, source, original)
        candidate = Candidate(target=target, source=source, origin="bench", parent="",
                              keeps_original=keeps_original)
        gap = unproven(report, candidate, original)
        if gap is not None and self.policy.verification.coverage_required(target):
            return Verdict(True, "shadow", "unproven", "unproven", gap.describe(), report)
        return self.decide(report, min_speedup)

    def decide(self, report: ShadowReport, min_speedup: float | None = None) -> Verdict:
        acceptance = self.policy.acceptance
        verdict = decide(report, acceptance.min_speedup if min_speedup is None else min_speedup,
                         confidence=acceptance.confidence, min_calls=acceptance.min_calls)
        if isinstance(verdict, Accepted):
            return Verdict(False, "accepted", f"speedup {verdict.speedup:.3f} "
                           f"[{verdict.ci_low:.3f}, {verdict.ci_high:.3f}]", "", report=report)
        if verdict.stage == "accept":
            return Verdict(True, "accept", verdict.reason, "speed", verdict.detail, report)
        return Verdict(True, "shadow", verdict.reason, caught_by(report), verdict.detail, report)


def caught_by(report: ShadowReport) -> str:
    """Which check turned a shadow run against the candidate.

    ``hash_seed`` is the second replay, which since report format 3 also runs the
    calls in a shuffled order: a different outcome there may be either cause.
    """
    if report.status != "mismatch":
        return report.status
    if report.reason.startswith("depends on hash seed"):
        return "hash_seed"
    kind = report.mismatches[0].kind if report.mismatches else ""
    if kind in ("property", "invariant", "stateful"):
        return kind
    if kind in ("symbolic", "found"):
        return "counterexample"
    return "differential"


def without_new_steps(policy: Policy) -> Policy:
    """``policy`` without the proof-coverage steps: no coverage gate, no symbolic diff, no
    input search, and every target may memoise (so no state watch). The shuffled second
    replay cannot be turned off; it stays in both."""
    verification = policy.verification.model_copy(update={
        "require_full_coverage": False, "symbolic_seconds": 0.0, "search_seconds": 0.0,
        "memoise": ("*",)})
    return policy.model_copy(update={"verification": verification})


def default_policy() -> Policy:
    return load_policy(POLICY_FILE)


@dataclass(frozen=True)
class Probe:
    """A wider search for a difference, run in this process on a mutant the gate let pass."""

    inputs: int  # generated inputs compared
    difference: str  # the first differing input and outcomes, or "" when none was found


def probe_equivalence(target: str, source: str, corpus: Corpus, *, examples: int = 1000,
                      seconds: float = 15.0, seed: int = 1) -> Probe:
    """Compare original and ``source`` on many more generated inputs than the shadow draws.

    Benchmark-only: the candidates here are our own mutants, so they run unjailed.
    Finding no difference makes a mutant *likely* equivalent, for a person to confirm.
    """
    import pickle
    import time

    from invariants.compare import compare_outcomes
    from invariants.render import call_repr
    from invariants.replay import call
    from invariants.strategies import call_strategy, generate_inputs
    from invariants.targets import Target, compile_function, make_function, resolve

    original = resolve(Target.parse(target))
    mutant = make_function(compile_function(source, original, filename="<mutant>"), original)
    calls = [record.load_args() for record in corpus.records[:200]]
    blobs = generate_inputs(call_strategy(original, calls), examples, seed)
    deadline = time.monotonic() + seconds
    for count, blob in enumerate(blobs, 1):
        expected = call(original, *pickle.loads(blob))
        actual = call(mutant, *pickle.loads(blob))
        difference = compare_outcomes(expected, actual)
        if difference is not None:
            return Probe(count, f"{call_repr(*pickle.loads(blob))}: expected "
                                f"{difference.expected}, got {difference.actual}")
        if time.monotonic() > deadline:
            return Probe(count, "")
    return Probe(len(blobs), "")
