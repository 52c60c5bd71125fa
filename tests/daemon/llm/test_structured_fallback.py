"""The proposer's fallback for servers without structured output: fenced code, said once."""

from __future__ import annotations

from collections.abc import Callable

from structlog.testing import capture_logs

from daemon.synthesis.base import ProposalRequest
from daemon.synthesis.llm import LLMProposer, LLMRequestRejected
from tests.daemon.llm.standin import Reply, Seen, StandIn, chat_body
from tests.daemon.llm.test_client_faults import Env

REQUEST = ProposalRequest(
    target="shop.pricing:total",
    source="def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s\n",
)
FENCED = "```python\ndef total(xs):\n    return sum(xs)\n```\nThe builtin sums in C."


def _refusing(message: str) -> Callable[[Seen], Reply]:
    def reply(seen: Seen) -> Reply:
        if isinstance(seen.body, dict) and "response_format" in seen.body:
            return Reply(400, {"error": {"message": message}})
        return Reply(200, chat_body(FENCED))
    return reply


def test_a_refused_response_format_falls_back_to_fenced_code_and_says_so_once() -> None:
    """After one refusal the proposer asks for fenced code, logs it once, and gets candidates."""
    with StandIn(_refusing("response_format json_schema is not supported")) as server, \
            capture_logs() as logs:
        proposer = LLMProposer(Env(server.url).client, "m", samples=1)
        first = proposer.propose_detailed(REQUEST)
        second = proposer.propose_detailed(REQUEST)
    assert [c.source for c in first.candidates] == ["def total(xs):\n    return sum(xs)\n"]
    assert len(second.candidates) == 1 and first.error is None
    asked = [seen.body for seen in server.seen if isinstance(seen.body, dict)]
    assert ["response_format" in body for body in asked] == [True, False, False]
    assert "fenced code block" in asked[1]["messages"][-1]["content"]
    warnings = [e for e in logs if e["event"] == "llm_structured_output_unsupported"]
    assert len(warnings) == 1 and "response_format" in warnings[0]["detail"]


def test_other_rejections_do_not_turn_structured_output_off() -> None:
    """A 400 about something else (the prompt is too long) is an error, not a fallback."""
    with StandIn(_refusing("This model's maximum context length is 2048 tokens")) as server:
        proposer = LLMProposer(Env(server.url).client, "m", samples=1)
        proposal = proposer.propose_detailed(REQUEST)
        again = proposer.propose_detailed(REQUEST)
    assert isinstance(proposal.error, LLMRequestRejected) and not proposal.candidates
    assert isinstance(again.error, LLMRequestRejected)
    assert all("response_format" in seen.body for seen in server.seen
               if isinstance(seen.body, dict))
