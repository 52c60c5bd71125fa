"""The client against a stand-in server that fails in every way a model server can."""

from __future__ import annotations

import email.utils
import gzip
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from prometheus_client import CollectorRegistry

from daemon.metrics import Metrics
from daemon.synthesis.base import ProposalRequest
from daemon.synthesis.llm import (
    ClientConfig,
    LLMBadResponse,
    LLMCircuitOpen,
    LLMClient,
    LLMConfigError,
    LLMProposer,
    LLMRequestRejected,
    LLMTimeout,
    LLMUnavailable,
)
from tests.clock import FakeClock
from tests.daemon.llm.standin import MODELS, Reply, Seen, StandIn, chat_body

MESSAGES = [{"role": "user", "content": "hello"}]
CONFIG = ClientConfig(base_url="http://127.0.0.1:9", model="stand-in", connect_timeout=1.0,
                      read_timeout=5.0, max_retries=2, backoff_base=0.5, backoff_max=8.0,
                      breaker_threshold=3, breaker_cooldown=30.0)


class Env:
    """A client wired to fake sleep, jitter and clock, with its metrics."""

    def __init__(self, url: str, **overrides: object) -> None:
        self.sleeps: list[float] = []
        self.clock = FakeClock()
        self.metrics = Metrics(CollectorRegistry())
        config = replace(CONFIG, base_url=url, **overrides)  # type: ignore[arg-type]
        self.client = LLMClient(config, metrics=self.metrics, sleep=self._sleep,
                                random=lambda: 0.5, clock=self.clock, environ={})

    def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)

    def breaker_state(self) -> str:
        # read through a call, so that mypy does not narrow the state across clock moves
        return self.client.breaker.state

    def requests(self, result: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "selfmod_llm_requests_total", {"result": result})
        return value or 0.0


def header(seen: Seen, name: str) -> str | None:
    """A request header by name, in any case: HTTP header names are case-insensitive."""
    found = [value for key, value in seen.headers.items() if key.lower() == name.lower()]
    return found[0] if found else None


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    yield port


def test_server_down_is_retried_with_backoff_then_unavailable(closed_port: int) -> None:
    """A refused connection is retried with growing, jittered delays, then reported."""
    env = Env(f"http://127.0.0.1:{closed_port}")
    with pytest.raises(LLMUnavailable) as caught:
        env.client.chat(MESSAGES)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert env.sleeps == [0.375, 0.75]  # ceiling 0.5 then 1.0, equal jitter at random()=0.5
    assert env.requests("connect_error") == 3


def test_slow_server_times_out() -> None:
    """A server that does not answer within the read timeout ends in LLMTimeout."""
    with StandIn([Reply(body=chat_body("x"), delay=3.0)] * 2) as server:
        client = LLMClient(replace(CONFIG, base_url=server.url, read_timeout=0.2, max_retries=1),
                           sleep=lambda s: None, environ={})
        started = time.monotonic()
        with pytest.raises(LLMTimeout):
            client.chat(MESSAGES)
        assert time.monotonic() - started < 2.0
        assert len(server.seen) == 2  # timeouts are retried
        client.close()


def test_dribbling_body_hits_the_total_deadline() -> None:
    """A body arriving a byte at a time cannot hold a request past the total timeout."""
    with StandIn([Reply(body=chat_body("x" * 200), drip=0.02)]) as server:
        client = LLMClient(replace(CONFIG, base_url=server.url, read_timeout=1.0,
                                   total_timeout=0.3, max_retries=0), environ={})
        with pytest.raises(LLMTimeout, match="still arriving"):
            client.chat(MESSAGES)
        client.close()


def test_429_honours_retry_after() -> None:
    """A 429 is retried after the number of seconds the server asked for."""
    script = [Reply(429, {"error": "busy"}, headers={"Retry-After": "2"}),
              Reply(body=chat_body("ok"))]
    with StandIn(script) as server:
        env = Env(server.url)
        result = env.client.chat(MESSAGES)
    assert result.texts == ["ok"]
    assert env.sleeps == [2.0]
    assert env.requests("http_429") == 1
    assert env.requests("ok") == 1


def test_retry_after_as_http_date() -> None:
    """Retry-After given as an HTTP date is turned into a delay from now."""
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    script = [Reply(503, headers={"Retry-After": when}), Reply(body=chat_body("ok"))]
    with StandIn(script) as server:
        env = Env(server.url)
        env.client.chat(MESSAGES)
    assert len(env.sleeps) == 1 and 2.0 <= env.sleeps[0] <= 5.0


def test_retry_after_longer_than_we_wait_gives_up_at_once() -> None:
    """A Retry-After beyond max_retry_after is not slept through."""
    with StandIn([Reply(429, headers={"Retry-After": "3600"})]) as server:
        env = Env(server.url)
        with pytest.raises(LLMUnavailable, match=r"429.*retry after 3600 s"):
            env.client.chat(MESSAGES)
    assert env.sleeps == []
    assert len(server.seen) == 1


def test_500_then_success_is_retried() -> None:
    """A transient 500 is retried and the second answer is returned."""
    script = [Reply(500, {"error": "oops"}), Reply(body=chat_body("a", "b"))]
    with StandIn(script) as server:
        env = Env(server.url)
        result = env.client.chat(MESSAGES, n=2)
    assert result.texts == ["a", "b"]
    assert (result.prompt_tokens, result.completion_tokens) == (11, 7)
    assert env.requests("http_5xx") == 1 and env.requests("ok") == 1
    assert env.metrics.registry.get_sample_value(
        "selfmod_llm_tokens_total", {"kind": "prompt"}) == 11
    assert env.metrics.registry.get_sample_value(
        "selfmod_llm_request_duration_seconds_count") == 2


def test_persistent_500_ends_unavailable() -> None:
    """Every attempt failing with 5xx ends in LLMUnavailable after max_retries retries."""
    with StandIn([Reply(502)] * 3) as server:
        env = Env(server.url)
        with pytest.raises(LLMUnavailable, match="502"):
            env.client.chat(MESSAGES)
    assert len(server.seen) == 3


def test_other_4xx_is_not_retried() -> None:
    """A 400 means the request is wrong: no retry, and the status is kept."""
    with StandIn([Reply(400, {"error": "max_tokens too large"})]) as server:
        env = Env(server.url)
        with pytest.raises(LLMRequestRejected, match="max_tokens too large") as caught:
            env.client.chat(MESSAGES)
    assert caught.value.status_code == 400
    assert len(server.seen) == 1 and env.sleeps == []


def test_malformed_json_is_a_bad_response() -> None:
    """A body that is not JSON is refused, not retried, with the cause attached."""
    with StandIn([Reply(body=b'{"choices": [')]) as server:
        env = Env(server.url)
        with pytest.raises(LLMBadResponse) as caught:
            env.client.chat(MESSAGES)
    assert isinstance(caught.value.__cause__, ValueError)
    assert len(server.seen) == 1
    assert env.requests("bad_response") == 1


@pytest.mark.parametrize("body", [
    {"choices": []},
    {"result": "text"},
    {"choices": [{"message": {"content": 42}}]},
    {"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": "many"}},
    [1, 2, 3],
])
def test_wrong_shape_is_a_bad_response(body: object) -> None:
    """JSON of the wrong shape is refused as a bad response."""
    with StandIn([Reply(body=body)]) as server:
        env = Env(server.url)
        with pytest.raises(LLMBadResponse):
            env.client.chat(MESSAGES)
    assert env.requests("bad_response") == 1 and env.requests("ok") == 0


@pytest.mark.parametrize("declared", [True, False])
def test_huge_body_is_capped(declared: bool) -> None:
    """A body over the cap is refused whether or not Content-Length announces it."""
    huge = chat_body("x" * 1_000_000)
    with StandIn([Reply(body=huge, length=declared)]) as server:
        env = Env(server.url, max_response_bytes=64 * 1024)
        with pytest.raises(LLMBadResponse, match="cap"):
            env.client.chat(MESSAGES)


def test_breaker_opens_after_consecutive_failures_and_half_opens_after_cooldown() -> None:
    """N failed calls open the breaker; after the cool-down one trial call closes it again."""
    script = [Reply(500)] * 3 + [Reply(body=chat_body("back"))]
    with StandIn(script) as server:
        env = Env(server.url, max_retries=0)
        for _ in range(3):
            with pytest.raises(LLMUnavailable):
                env.client.chat(MESSAGES)
        assert env.breaker_state() == "open"
        with pytest.raises(LLMCircuitOpen):
            env.client.chat(MESSAGES)
        assert len(server.seen) == 3  # the refused call never left the process
        assert env.requests("breaker_open") == 1
        env.clock.advance(29.0)
        assert env.breaker_state() == "open"
        env.clock.advance(1.0)
        assert env.breaker_state() == "half-open"
        assert env.client.chat(MESSAGES).texts == ["back"]
        assert env.breaker_state() == "closed"


def test_failed_trial_reopens_the_breaker() -> None:
    """When the half-open trial fails, the breaker opens for another cool-down."""
    with StandIn([Reply(500)] * 4) as server:
        env = Env(server.url, max_retries=0, breaker_threshold=1)
        with pytest.raises(LLMUnavailable):
            env.client.chat(MESSAGES)
        env.clock.advance(30.0)
        with pytest.raises(LLMUnavailable):
            env.client.chat(MESSAGES)  # the trial
        assert env.breaker_state() == "open"
        assert len(server.seen) == 2


def test_bad_response_does_not_trip_the_breaker() -> None:
    """A server that answers, even badly, is up: the breaker stays closed."""
    with StandIn([Reply(body=b"nope")] * 3) as server:
        env = Env(server.url, max_retries=0, breaker_threshold=1)
        for _ in range(3):
            with pytest.raises(LLMBadResponse):
                env.client.chat(MESSAGES)
        assert env.breaker_state() == "closed"
        assert len(server.seen) == 3


def test_request_carries_model_samples_and_response_format() -> None:
    """The chat body is what vLLM expects: model, n, max_tokens, temperature, response_format."""
    fmt = {"type": "json_schema", "json_schema": {"name": "c", "schema": {"type": "object"}}}
    with StandIn([Reply(body=chat_body("a", "b"))]) as server:
        env = Env(server.url)
        env.client.chat(MESSAGES, n=2, max_tokens=64, temperature=0.2, response_format=fmt)
    seen = server.seen[0]
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.body == {"model": "stand-in", "messages": MESSAGES, "n": 2, "max_tokens": 64,
                         "temperature": 0.2, "response_format": fmt}


def test_base_url_with_v1_suffix_is_accepted() -> None:
    """A base URL written with /v1 (the OpenAI convention) reaches the same endpoints."""
    with StandIn([Reply(), Reply(body=MODELS)]) as server:
        env = Env(server.url + "/v1/")
        report = env.client.health()
    assert report.ok
    assert [s.path for s in server.seen] == ["/health", "/v1/models"]


def test_api_key_from_env_is_sent_but_never_shown(closed_port: int) -> None:
    """The key goes into the Authorization header and nowhere else: repr, errors, config."""
    secret = "sk-very-secret-value"
    with StandIn([Reply(body=chat_body("x"))]) as server:
        config = replace(CONFIG, base_url=server.url, api_key_env="SELFMOD_TEST_KEY")
        client = LLMClient(config, environ={"SELFMOD_TEST_KEY": secret})
        client.chat(MESSAGES)
        assert header(server.seen[0], "Authorization") == f"Bearer {secret}"
        assert secret not in repr(client) and secret not in repr(config)
        assert secret not in repr(vars(client))
        client.close()
    down = LLMClient(replace(config, base_url=f"http://127.0.0.1:{closed_port}", max_retries=0),
                     environ={"SELFMOD_TEST_KEY": secret})
    with pytest.raises(LLMUnavailable) as caught:
        down.chat(MESSAGES)
    assert secret not in str(caught.value) and secret not in repr(caught.value.__cause__)


def test_api_key_from_file(tmp_path: object) -> None:
    """A key file's content, stripped, becomes the bearer token."""
    from pathlib import Path
    key_file = Path(str(tmp_path)) / "key"
    key_file.write_text("file-key\n")
    with StandIn([Reply(body=chat_body("x"))]) as server:
        client = LLMClient(replace(CONFIG, base_url=server.url, api_key_file=str(key_file)),
                           environ={})
        client.chat(MESSAGES)
        client.close()
    assert header(server.seen[0], "Authorization") == "Bearer file-key"


def test_unset_key_variable_means_no_key() -> None:
    """A named but unset variable sends no Authorization header; a 401 then says where to look."""
    with StandIn([Reply(401, {"error": "unauthorized"})]) as server:
        client = LLMClient(replace(CONFIG, base_url=server.url, api_key_env="SELFMOD_NOT_SET"),
                           environ={})
        with pytest.raises(LLMRequestRejected, match="api_key_env"):
            client.chat(MESSAGES)
        client.close()
    assert header(server.seen[0], "Authorization") is None


def test_openai_variables_of_the_host_never_reach_the_model_server(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys, organisation and project the SDK would read from OPENAI_* variables are not sent."""
    for name, value in {"OPENAI_API_KEY": "sk-host", "OPENAI_ADMIN_KEY": "sk-admin",
                        "OPENAI_ORG_ID": "org-host", "OPENAI_PROJECT_ID": "proj-host",
                        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
                        "OPENAI_CUSTOM_HEADERS": "Authorization: Bearer sk-custom"}.items():
        monkeypatch.setenv(name, value)
    with StandIn([Reply(body=chat_body("x"))]) as server:
        env = Env(server.url)
        env.client.chat(MESSAGES)
    seen = server.seen[0]
    for name in ("Authorization", "OpenAI-Organization", "OpenAI-Project"):
        assert header(seen, name) is None
    assert "sk-" not in repr(seen.headers)


def test_compressed_body_is_refused() -> None:
    """The client asks for an uncompressed body and refuses a compressed one it cannot cap."""
    packed = gzip.compress(json.dumps(chat_body("x")).encode())
    with StandIn([Reply(body=packed, headers={"Content-Encoding": "gzip"})]) as server:
        env = Env(server.url)
        with pytest.raises(LLMBadResponse, match="compressed"):
            env.client.chat(MESSAGES)
    assert header(server.seen[0], "Accept-Encoding") == "identity"
    assert env.requests("bad_response") == 1


@pytest.mark.parametrize("overrides,match", [
    ({"api_key_file": "/nonexistent/key"}, "/nonexistent/key"),
    ({"api_key_env": "SELFMOD_NOT_SET", "api_key_file": "/nonexistent/key"}, "api_key_file"),
    ({"base_url": "127.0.0.1:8000"}, "base_url"),
    ({"base_url": "http://[::1"}, "base_url"),
])
def test_unusable_settings_say_what_to_change(overrides: dict[str, str], match: str) -> None:
    """An unreadable key file or an unusable URL is an LLMConfigError naming the setting."""
    with pytest.raises(LLMConfigError, match=match):
        LLMClient(replace(CONFIG, **overrides), environ={})  # type: ignore[arg-type]


def test_health_reports_model_and_latency() -> None:
    """health() probes /health then /v1/models and reports the served model."""
    with StandIn([Reply(), Reply(body=MODELS)]) as server:
        env = Env(server.url)
        report = env.client.health()
    assert report.ok and report.model == "stand-in" and report.models == ("stand-in",)
    assert report.error == ""
    assert env.metrics.registry.get_sample_value("selfmod_llm_up") == 1


def test_health_names_the_served_models_when_ours_is_missing() -> None:
    """A server serving another model is not healthy for us, and says what it serves."""
    with StandIn([Reply(), Reply(body=MODELS)]) as server:
        env = Env(server.url, model="qwen")
        report = env.client.health()
    assert not report.ok and "stand-in" in report.error and "llm.model" in report.error
    assert env.metrics.registry.get_sample_value("selfmod_llm_up") == 0


@pytest.mark.parametrize("body", [[1, 2], {"data": "x"}, {"data": [{"id": 3}]}, b"<html>"])
def test_health_turns_a_garbled_model_list_into_a_report(body: object) -> None:
    """A /v1/models body of the wrong shape makes an unhealthy report, not an exception."""
    with StandIn([Reply(), Reply(body=body)]) as server:
        env = Env(server.url)
        report = env.client.health()
    assert not report.ok and "LLMBadResponse" in report.error
    assert env.requests("bad_response") == 1
    assert env.metrics.registry.get_sample_value("selfmod_llm_up") == 0


def test_health_of_a_down_server_does_not_raise(closed_port: int) -> None:
    """health() turns a refused connection into a report, without retries."""
    env = Env(f"http://127.0.0.1:{closed_port}")
    report = env.client.health()
    assert not report.ok and "LLMUnavailable" in report.error
    assert env.sleeps == []
    assert env.metrics.registry.get_sample_value("selfmod_llm_up") == 0


REQUEST = ProposalRequest(
    target="shop.pricing:total",
    source="def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s\n",
)


def test_proposer_turns_samples_into_candidates_and_failures() -> None:
    """Good samples become candidates with origin, parent and cost; bad ones become failures."""
    good = '{"code": "def total(xs):\\n    return sum(xs)\\n", "rationale": "builtin sum"}'
    bad = '{"code": "def totl(xs):\\n    return 0\\n", "rationale": ""}'
    with StandIn([Reply(body=chat_body(good, bad, prompt_tokens=100,
                                       completion_tokens=40))]) as server:
        env = Env(server.url)
        proposer = LLMProposer(env.client, "stand-in", samples=2)
        proposal = proposer.propose_detailed(REQUEST)
    [candidate] = proposal.candidates
    assert candidate.source == "def total(xs):\n    return sum(xs)\n"
    assert candidate.origin == "llm:stand-in" and candidate.rationale == "builtin sum"
    assert len(candidate.parent) == 64
    assert candidate.cost["prompt_tokens"] == 50 and candidate.cost["completion_tokens"] == 20
    assert [f.reason for f in proposal.failures] == ["wrong_name"]
    assert proposal.cost["prompt_tokens"] == 100 and proposal.error is None
    body = server.seen[0].body
    assert body["n"] == 2 and body["response_format"]["type"] == "json_schema"


def test_proposer_reports_a_down_server_without_raising(closed_port: int) -> None:
    """When the request fails, propose() returns nothing and keeps the error to report."""
    env = Env(f"http://127.0.0.1:{closed_port}")
    proposer = LLMProposer(env.client, "stand-in")
    assert proposer.propose(REQUEST) == []
    assert isinstance(proposer.last_error, LLMUnavailable)
    assert proposer.last_failures == []
