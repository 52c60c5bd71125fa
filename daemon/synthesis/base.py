"""What every proposer produces and consumes.

A proposer turns the current source of a hot function into candidate sources.
Proposers never run what they produce: candidates are untrusted text until the
envelope (static gate, then the sandboxed shadow) has judged them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


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


class Proposer(Protocol):
    """Produces candidates for a request; returns an empty list when it has nothing new."""

    name: str

    def propose(self, request: ProposalRequest) -> list[Candidate]: ...
