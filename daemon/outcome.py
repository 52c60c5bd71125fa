"""What a synthesis cycle ends with: each candidate's verdict, and the cycle's report.

:func:`summarize` is the pure decision of a cycle's outcome from its
candidates' outcomes, tested without a daemon; :mod:`daemon.cycle` produces
the values, :mod:`daemon.report` and the main loop read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from daemon.events import CycleOutcome

# the longest `reason` of a rejected cycle: it names every stage and reason once
REASON_CHARS = 500


class CandidateVerdict(StrEnum):
    """What became of one candidate; str-valued, so the run report reads the same."""

    SWAPPED = "swapped"  # live, and it held up under its canary
    ACCEPTED = "accepted"  # passed every check, not installed (the daemon was stopping)
    PENDING_APPROVAL = "pending_approval"  # passed every check, waits for `selfmod approve`
    REJECTED = "rejected"  # failed a stage; ``stage`` and ``reason`` say which and why
    ROLLED_BACK = "rolled_back"  # swapped, then taken out by the canary


# a verdict that ends the cycle's search: nothing after it is judged
FINAL = frozenset({CandidateVerdict.SWAPPED, CandidateVerdict.PENDING_APPROVAL})


@dataclass(frozen=True)
class CandidateOutcome:
    """What became of one candidate in a cycle."""

    version: str
    origin: str
    verdict: CandidateVerdict
    stage: str = ""
    reason: str = ""
    detail: str = ""
    speedup: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    calls: int = 0
    shadow_seconds: float = 0.0
    shadow_phases: dict[str, float] = field(default_factory=dict)  # see ShadowReport.phases


@dataclass(frozen=True)
class CycleReport:
    """The result of one cycle: the target, every candidate's fate, and the outcome."""

    target: str
    share: float
    outcome: CycleOutcome
    reason: str = ""
    parent: str = ""
    seconds: float = 0.0
    candidates: tuple[CandidateOutcome, ...] = ()
    swapped: str | None = None
    corpus_calls: int = 0
    compute_seconds: dict[str, float] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)  # prompt_tokens, completion_tokens
    corrections: int = 0  # self-correction rounds


@dataclass(frozen=True)
class Summary:
    """A cycle's outcome decided from its candidates: the outcome, why, and what went live."""

    outcome: CycleOutcome
    reason: str = ""
    swapped: str | None = None


def summarize(outcomes: Sequence[CandidateOutcome], *, stopping: bool) -> Summary:
    """The outcome of a cycle whose judged candidates ended as ``outcomes``.

    A swap wins over everything; then no candidate at all, one waiting for
    approval, a canary rollback, the daemon stopping, and otherwise a rejection
    naming each distinct stage and reason.
    """
    swapped = next((o.version for o in outcomes if o.verdict is CandidateVerdict.SWAPPED), None)
    if swapped:
        return Summary(CycleOutcome.SWAPPED, "", swapped)
    if not outcomes:
        return Summary(CycleOutcome.NO_CANDIDATES,
                       "every proposal was unusable (see parse rejections)")
    if any(o.verdict is CandidateVerdict.PENDING_APPROVAL for o in outcomes):
        return Summary(CycleOutcome.PENDING, "waiting for `selfmod approve`")
    rolled_back = sorted({f"canary: {o.reason}" for o in outcomes
                          if o.verdict is CandidateVerdict.ROLLED_BACK})
    if rolled_back:
        return Summary(CycleOutcome.ROLLED_BACK, "; ".join(rolled_back))
    if stopping:
        return Summary(CycleOutcome.ABORTED, "daemon stopping")
    reasons = sorted({f"{o.stage}: {o.reason}" for o in outcomes})
    return Summary(CycleOutcome.REJECTED, "; ".join(reasons)[:REASON_CHARS])
