"""The model proposer: one chat request with ``n`` samples, parsed into candidates.

A sample that does not yield a usable function is not a candidate, but it is
not silently dropped either: :meth:`LLMProposer.propose_detailed` returns it as
a :class:`~daemon.synthesis.llm.parse.ParseFailure` for the cycle to record as
a rejection at stage ``parse``. A failed request (server down, timeout, breaker
open, garbage body) yields no candidates and the error, never an exception:
the daemon goes on with whatever other proposers offer.

Structured output is asked for (a JSON-schema ``response_format``) until the
server refuses it: then the proposer says so once in the log and from then on
asks for a fenced code block, which the parser reads as well. Servers differ
here (llama.cpp and vLLM constrain output, some Ollama versions refuse).
"""

from __future__ import annotations

import ast
import hashlib
import textwrap
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from daemon.synthesis.base import Candidate, ProposalRequest
from daemon.synthesis.llm.client import ChatResult
from daemon.synthesis.llm.errors import LLMError, LLMRequestRejected
from daemon.synthesis.llm.parse import Parsed, ParseFailure, parse_sample
from daemon.synthesis.llm.prompt import (
    DEFAULT_LIMITS,
    PromptLimits,
    build_messages,
    response_format,
)

# Words of a 4xx that is about response_format itself, not about the prompt or the model.
_FORMAT_WORDS = ("response_format", "json_schema", "guided", "grammar", "structured")

UNCHANGED = "unchanged"
DUPLICATE = "duplicate"
ALREADY_REJECTED = "already_rejected"


class ChatClient(Protocol):
    """What the proposer needs from a client: :class:`~daemon.synthesis.llm.client.LLMClient`."""

    def chat(self, messages: Sequence[Mapping[str, str]], *, n: int = 1, max_tokens: int = 512,
             temperature: float = 0.7,
             response_format: Mapping[str, Any] | None = None) -> ChatResult: ...


@dataclass(frozen=True)
class Proposal:
    """Everything one request produced: candidates, rejected samples, cost, or the error."""

    candidates: list[Candidate] = field(default_factory=list)
    failures: list[ParseFailure] = field(default_factory=list)
    cost: dict[str, float] = field(default_factory=dict)  # prompt/completion tokens, seconds
    error: LLMError | None = None


class LLMProposer:
    """Asks a model for ``samples`` rewrites of the target per request.

    A :class:`~daemon.synthesis.base.DetailedProposer` (:meth:`propose_detailed`)
    and a :class:`~daemon.synthesis.base.SelfCorrecting` one.
    """

    name = "llm"
    # the request's feedback goes into the prompt: a rejected candidate's evidence yields
    # a corrected one (daemon.synthesis.base.SelfCorrecting)
    self_correcting = True

    def __init__(self, client: ChatClient, model_name: str, *, samples: int = 2,
                 max_tokens: int = 1024, temperature: float = 0.7,
                 max_code_chars: int | None = 8000, max_rationale_chars: int | None = 600,
                 limits: PromptLimits = DEFAULT_LIMITS, log: Any = None) -> None:
        self.client = client
        self.model_name = model_name
        self.origin = f"llm:{model_name}"
        self.samples = samples
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.limits = limits
        self._response_format = response_format(max_code_chars, max_rationale_chars)
        self._structured = True  # until the server refuses response_format
        self._log = log if log is not None else structlog.get_logger("selfmod.llm")
        self._last = threading.local()

    def __repr__(self) -> str:
        return f"LLMProposer(model={self.model_name!r}, samples={self.samples})"

    @property
    def last_failures(self) -> list[ParseFailure]:
        """The rejected samples of this thread's last :meth:`propose` call."""
        last: Proposal | None = getattr(self._last, "proposal", None)
        return list(last.failures) if last else []

    @property
    def last_error(self) -> LLMError | None:
        """The request error of this thread's last :meth:`propose` call, if it failed."""
        last: Proposal | None = getattr(self._last, "proposal", None)
        return last.error if last else None

    def _chat(self, request: ProposalRequest) -> ChatResult:
        """One request, structured while the server allows it, fenced code after that."""
        if self._structured:
            try:
                return self.client.chat(build_messages(request, self.limits), n=self.samples,
                                        max_tokens=self.max_tokens,
                                        temperature=self.temperature,
                                        response_format=self._response_format)
            except LLMRequestRejected as exc:
                if not _refuses_format(exc):
                    raise
                self._structured = False
                self._log.warning("llm_structured_output_unsupported", model=self.model_name,
                                  detail=str(exc)[:300],
                                  fallback="asking for a fenced code block from now on")
        return self.client.chat(build_messages(request, self.limits, fenced=True),
                                n=self.samples, max_tokens=self.max_tokens,
                                temperature=self.temperature)

    def propose(self, request: ProposalRequest) -> list[Candidate]:
        """The :class:`~daemon.synthesis.base.Proposer` call; see :meth:`propose_detailed`."""
        proposal = self.propose_detailed(request)
        self._last.proposal = proposal
        return list(proposal.candidates)

    def propose_detailed(self, request: ProposalRequest) -> Proposal:
        """One request to the model; never raises an :class:`LLMError`."""
        try:
            result = self._chat(request)
        except LLMError as exc:
            return Proposal(error=exc)
        cost = {"prompt_tokens": float(result.prompt_tokens),
                "completion_tokens": float(result.completion_tokens),
                "seconds": result.seconds}
        # each sample carries its share, so candidate costs add up to the request's cost
        share = {k: v / max(1, len(result.texts)) for k, v in cost.items()}
        parent = hashlib.sha256(request.source.encode()).hexdigest()
        name = request.target.rpartition(":")[2].rpartition(".")[2]
        tried = {_normal(f.candidate_source) for f in request.feedback}
        seen: set[str] = set()
        candidates: list[Candidate] = []
        failures: list[ParseFailure] = []
        for index, text in enumerate(result.texts):
            reasons = result.finish_reasons
            cut = index < len(reasons) and reasons[index] == "length"
            parsed = parse_sample(text, name, original_source=request.source, truncated=cut)
            if isinstance(parsed, Parsed):
                parsed_or_failure = _novelty(parsed, request.source, tried, seen, text)
            else:
                parsed_or_failure = parsed
            if isinstance(parsed_or_failure, ParseFailure):
                failures.append(parsed_or_failure)
                continue
            seen.add(_normal(parsed_or_failure.source))
            candidates.append(Candidate(target=request.target, source=parsed_or_failure.source,
                                        origin=self.origin, parent=parent,
                                        rationale=parsed_or_failure.rationale, cost=dict(share)))
        return Proposal(candidates, failures, cost)


def _refuses_format(exc: LLMRequestRejected) -> bool:
    """Whether a rejected request was refused for its ``response_format``."""
    text = str(exc).lower()
    return exc.status_code in (400, 422, 501) and any(word in text for word in _FORMAT_WORDS)


def _novelty(parsed: Parsed, original: str, tried: set[str], seen: set[str],
             text: str) -> Parsed | ParseFailure:
    """Drops samples that bring nothing new: the original, a repeat, a known failure."""
    key = _normal(parsed.source)
    if key == _normal(original):
        return ParseFailure(UNCHANGED, "the sample returns the original function", text[:200])
    if key in seen:
        return ParseFailure(DUPLICATE, "another sample of this request is the same", text[:200])
    if key in tried:
        return ParseFailure(ALREADY_REJECTED, "this exact candidate was rejected before",
                            text[:200])
    return parsed


def _normal(source: str) -> str:
    """Source compared by its syntax tree, so comments and formatting do not make it new."""
    try:
        return ast.dump(ast.parse(textwrap.dedent(source)))
    except (SyntaxError, ValueError):
        return source.strip()
