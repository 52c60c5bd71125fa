"""Candidates from a model served by vLLM: client, prompt, parsing and the proposer.

``LLMClient`` talks to the server through the ``openai`` SDK (with
tenacity's retries, our size cap and circuit breaker), ``build_messages`` turns a
``ProposalRequest`` into a prompt, ``parse_sample`` turns each sample into one
function or a reason, and ``LLMProposer`` ties them together behind the
``Proposer`` protocol. ``apply_to_module`` puts a function back into its module.
"""

from daemon.synthesis.llm.client import ChatResult, ClientConfig, HealthReport, LLMClient
from daemon.synthesis.llm.errors import (
    ApplyError,
    LLMBadResponse,
    LLMCircuitOpen,
    LLMConfigError,
    LLMError,
    LLMRequestRejected,
    LLMServerBusy,
    LLMTimeout,
    LLMUnavailable,
)
from daemon.synthesis.llm.parse import Parsed, ParseFailure, apply_to_module, parse_sample
from daemon.synthesis.llm.prompt import SYSTEM_PROMPT, build_messages, response_format
from daemon.synthesis.llm.proposer import LLMProposer, Proposal

__all__ = [
    "SYSTEM_PROMPT",
    "ApplyError",
    "ChatResult",
    "ClientConfig",
    "HealthReport",
    "LLMBadResponse",
    "LLMCircuitOpen",
    "LLMClient",
    "LLMConfigError",
    "LLMError",
    "LLMProposer",
    "LLMRequestRejected",
    "LLMServerBusy",
    "LLMTimeout",
    "LLMUnavailable",
    "ParseFailure",
    "Parsed",
    "Proposal",
    "apply_to_module",
    "build_messages",
    "parse_sample",
    "response_format",
]
