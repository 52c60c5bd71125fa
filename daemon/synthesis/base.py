"""What every proposer produces and consumes.

A proposer turns the current source of a hot function into candidate sources.
Proposers never run what they produce: candidates are untrusted text until the
envelope (static gate, then the sandboxed shadow) has judged them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Feedback:
    """Why a previous candidate failed, sent back to a proposer for a corrected one."""

    candidate_source: str
    stage: str  # static | shadow | accept | canary
    reason: str
    evidence: str = ""  # failing input, expected and actual outcome, rendered as text


@dataclass(frozen=True)
class ProposalRequest:
    """Everything a proposer may know about the target it is asked to speed up."""

    target: str  # module:qualname
    source: str  # the function's current source (the active version's, or the original)
    module_source: str = ""  # the whole module, for context (imports, helpers)
    profile_share: float = 0.0  # the target's share of in-scope samples, 0..1
    input_shapes: Sequence[str] = ()  # short renderings of recorded arguments
    allowed_imports: Sequence[str] = ()
    intent: str = ""  # the operator's free text from the policy
    feedback: Sequence[Feedback] = ()


@dataclass(frozen=True)
class Candidate:
    """One proposed replacement for a target function: a single function definition."""

    target: str
    source: str
    origin: str  # rules:<rule-id>[+<rule-id>...] | llm:<model>
    parent: str  # version id (sha256 of source) this candidate was derived from
    rationale: str = ""
    cost: dict[str, float] = field(default_factory=dict)  # tokens, seconds spent producing it
    # The proposer states that what it did not rewrite is the code it was given, unchanged
    # (a rule's local rewrite). The shadow's coverage gate then excuses unexercised code
    # that it finds, by comparing syntax trees, to be the original's own unexercised code.
    keeps_original: bool = False


class Proposer(Protocol):
    """Produces candidates for a request; returns an empty list when it has nothing new.

    That is all every proposer can do. What some can do besides is a protocol of
    its own, declared by the proposer and checked with ``isinstance``:
    :class:`DetailedProposer` (reports unusable samples, cost and errors) and
    :class:`SelfCorrecting` (uses :attr:`ProposalRequest.feedback`).
    """

    name: str

    def propose(self, request: ProposalRequest) -> list[Candidate]: ...


class SampleFailure(Protocol):
    """One answer a proposer got but could not turn into a candidate."""

    @property
    def reason(self) -> str: ...

    @property
    def detail(self) -> str: ...

    @property
    def excerpt(self) -> str: ...  # the start of the answer, for the audit log


class DetailedProposal(Protocol):
    """Everything one request produced: candidates, unusable samples, cost, or the error."""

    @property
    def candidates(self) -> Sequence[Candidate]: ...

    @property
    def failures(self) -> Sequence[SampleFailure]: ...

    @property
    def cost(self) -> Mapping[str, float]: ...  # prompt_tokens, completion_tokens, seconds

    @property
    def error(self) -> BaseException | None: ...  # the request failed; never raised


@runtime_checkable
class DetailedProposer(Proposer, Protocol):
    """A proposer that also says what it could not use, what it cost, and why it failed."""

    origin: str  # the origin of its candidates, e.g. ``llm:<model>``

    def propose_detailed(self, request: ProposalRequest) -> DetailedProposal: ...


@runtime_checkable
class SelfCorrecting(Proposer, Protocol):
    """A proposer that reads the evidence of rejected candidates and proposes corrected ones.

    A proposer declares it with ``self_correcting = True``; the cycle then sends it
    :class:`Feedback` for another round, up to the policy's ``max_corrections``.
    """

    self_correcting: bool


def self_correcting(proposer: Proposer) -> bool:
    """Whether ``proposer`` declares that it uses feedback on rejected candidates."""
    return isinstance(proposer, SelfCorrecting) and proposer.self_correcting
