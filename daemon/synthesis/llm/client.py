"""The model client: the ``openai`` SDK pointed at vLLM, with what a daemon adds around it.

Three endpoints matter: ``GET /health``, ``GET /v1/models`` and ``POST
/v1/chat/completions``. The SDK builds and sends the requests and decodes the
answers; tenacity retries them (:mod:`~daemon.synthesis.llm.retry`). Ours, as
thin layers, because neither library has them: the response size cap and the
per-attempt deadline (:mod:`~daemon.synthesis.llm.guard`, under the SDK), the
circuit breaker over whole calls (:mod:`~daemon.synthesis.llm.breaker`), the
translation of every SDK and httpx error into our tree
(:mod:`~daemon.synthesis.llm.errors`), and the metrics.

The SDK's own retry is off (``max_retries=0``): it sleeps with ``time.sleep``
and its own randomness, where we pass the clock in (the fault tests never
sleep); it follows a ``Retry-After`` of up to 60 s and falls back to its own
backoff for a longer one, where we give up at once; and the breaker must see
one outcome per call.

The API key is read once, from the variable or file the configuration names,
and handed to the SDK, which sends it only as the bearer token. The key,
organisation and project the SDK would otherwise take from ``OPENAI_*``
variables are passed or omitted explicitly, so credentials meant for another
server never reach the model server. The key is in no message, repr or log
line of ours; the configuration holds only where it comes from.
"""

from __future__ import annotations

import json
import os
import random as _random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeVar, cast

import httpx
import openai
from prometheus_client import Counter, Gauge, Histogram

from daemon.synthesis.llm.breaker import CircuitBreaker
from daemon.synthesis.llm.errors import (
    LLMBadResponse,
    LLMCircuitOpen,
    LLMConfigError,
    LLMError,
    LLMRequestRejected,
    LLMServerBusy,
    LLMTimeout,
    LLMUnavailable,
)
from daemon.synthesis.llm.guard import GuardedTransport
from daemon.synthesis.llm.retry import asks_too_long, retry_after, retrying

T = TypeVar("T")
R = TypeVar("R")

# The SDK insists on a key, vLLM wants none unless started with --api-key: this
# placeholder (vLLM's own convention) stands in, and the header is omitted.
_NO_KEY = "EMPTY"
# Headers the SDK fills from OPENAI_* variables when not told otherwise.
_NOT_FROM_ENVIRONMENT = {"OpenAI-Organization": openai.omit, "OpenAI-Project": openai.omit}


@dataclass(frozen=True)
class ClientConfig:
    """Where the model server is and how patiently to talk to it."""

    base_url: str = "http://127.0.0.1:8000"  # with or without a trailing /v1
    model: str = "Qwen/Qwen2.5-Coder-7B-Instruct"  # the served model name
    api_key_env: str = ""  # name of an environment variable holding the key
    api_key_file: str = ""  # path of a file holding the key (read when the variable is unset)
    connect_timeout: float = 3.0
    read_timeout: float = 120.0  # longest silence between bytes
    total_timeout: float = 300.0  # longest single attempt, body included
    max_retries: int = 2  # extra attempts after the first
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 30.0  # a longer Retry-After is not waited for
    breaker_threshold: int = 5  # consecutive failed calls that open the breaker
    breaker_cooldown: float = 30.0
    max_response_bytes: int = 4 * 1024 * 1024


@dataclass(frozen=True)
class HealthReport:
    """What ``health()`` found: is the server up and serving the model we are configured for."""

    ok: bool
    model: str
    models: tuple[str, ...] = ()
    latency_seconds: float = 0.0
    error: str = ""
    context_length: int | None = None  # the model's context window, where the server says


@dataclass(frozen=True)
class StructuredOutput:
    """Whether the server constrains answers to a JSON schema (``response_format``).

    ``supported`` is None when the probe could not tell (the server was down).
    """

    supported: bool | None
    detail: str


@dataclass(frozen=True)
class ChatResult:
    """The samples of one chat completion, with what they cost."""

    texts: list[str]
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reasons: list[str] = field(default_factory=list)  # "stop" | "length" | ...


class LLMMetrics(Protocol):
    """The part of :class:`daemon.metrics.Metrics` the client updates."""

    llm_requests: Counter
    llm_tokens: Counter
    llm_seconds: Histogram
    llm_up: Gauge


def read_api_key(config: ClientConfig, environ: Mapping[str, str] = os.environ) -> str | None:
    """The API key: the named environment variable if set, else the named file, else None.

    An unset variable is not an error (a local vLLM usually runs without a key,
    and the server's 401 says so if it wants one); a named file that cannot be
    read is, because the operator pointed at it on purpose.
    """
    if config.api_key_env:
        value = environ.get(config.api_key_env, "").strip()
        if value:
            return value
    if config.api_key_file:
        path = Path(config.api_key_file)
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise LLMConfigError(f"llm.api_key_file {path} cannot be read ({exc.strerror}); "
                                 "fix the path or its permissions") from exc
        if not value:
            raise LLMConfigError(f"llm.api_key_file {path} is empty")
        return value
    return None


def _root_url(base_url: str) -> str:
    url = base_url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise LLMConfigError(f"llm.base_url {base_url!r} must start with http:// or https://")
    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise LLMConfigError(f"llm.base_url {base_url!r} is not a usable URL: {exc}") from exc
    return url.removesuffix("/v1")


class LLMClient:
    """Talks to one vLLM (or other OpenAI-compatible) server; thread-safe."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        metrics: LLMMetrics | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        clock: Callable[[], float] = time.monotonic,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.config = config
        self.base_url = _root_url(config.base_url)
        self.metrics = metrics
        self.breaker = CircuitBreaker(config.breaker_threshold, config.breaker_cooldown, clock)
        key = read_api_key(config, environ)
        self._sleep = sleep
        self._random = random
        self._clock = clock
        self._headers: dict[str, Any] = dict(_NOT_FROM_ENVIRONMENT)
        if key is None:
            self._headers["Authorization"] = openai.omit
        guard = GuardedTransport(transport or httpx.HTTPTransport(), config.max_response_bytes,
                                 config.total_timeout, clock)
        # trust_env=False: a proxy from the environment must not reroute model traffic.
        # identity: the guard counts bytes on the wire, which must be the bytes we keep.
        http = httpx.Client(transport=guard, trust_env=False, follow_redirects=False,
                            headers={"Accept-Encoding": "identity"})
        timeout = httpx.Timeout(connect=config.connect_timeout, read=config.read_timeout,
                                write=config.read_timeout, pool=config.connect_timeout)
        # The SDK types its transport objects as httpx2's but takes httpx's (our
        # dependency, and the type of our ``transport``) as they are; hence the casts.
        self._sdk = openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=key or _NO_KEY,
                                  timeout=cast(Any, timeout), max_retries=0,
                                  http_client=cast(Any, http))

    def __repr__(self) -> str:
        return f"LLMClient(base_url={self.base_url!r}, model={self.config.model!r})"

    def close(self) -> None:
        self._sdk.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- public calls -------------------------------------------------------------------------

    def health(self) -> HealthReport:
        """Probes ``/health`` then ``/v1/models`` once each; never raises, bypasses the breaker."""
        started = self._clock()
        model = self.config.model
        try:
            # /health is vLLM's (and llama.cpp's), not part of the OpenAI API: the SDK's
            # generic GET reaches it; a server without it (Ollama) answers 404, which is fine
            try:
                self._call("GET /health", lambda: self._sdk.get(
                    f"{self.base_url}/health", cast_to=cast(Any, httpx.Response),
                    options={"headers": self._headers}), lambda _: None, retry=False,
                    guarded=False)
            except LLMRequestRejected as exc:
                if exc.status_code != 404:
                    raise
            listed = self._call(
                "GET /v1/models",
                lambda: self._sdk.models.with_raw_response.list(extra_headers=self._headers),
                _parse_models, retry=False, guarded=False)
        except LLMError as exc:
            self._set_up(False)
            return HealthReport(False, model, (), self._clock() - started,
                                f"{type(exc).__name__}: {exc}")
        latency = self._clock() - started
        models = tuple(listed)
        if not model and models:
            model = models[0]
        if model not in models:
            self._set_up(False)
            return HealthReport(False, model, models, latency,
                                f"the server serves {', '.join(models) or 'no model'}, "
                                f"not {model}; set llm.model to one of them")
        self._set_up(True)
        return HealthReport(True, model, models, latency, context_length=listed[model])

    def probe_structured_output(self) -> StructuredOutput:
        """Ask for a tiny JSON object under a JSON schema and see what comes back; never raises.

        A server that refuses ``response_format`` (a 4xx) or answers with text
        that is not a JSON object does not constrain its output; the proposer then
        asks for a fenced code block instead.
        """
        messages = [{"role": "user", "content": 'Reply with the JSON object {"ok": true}.'}]
        schema = {"type": "json_schema", "json_schema": {"name": "probe", "strict": True,
                  "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}},
                             "required": ["ok"], "additionalProperties": False}}}
        try:
            result = self.chat(messages, n=1, max_tokens=32, temperature=0.0,
                               response_format=schema)
        except LLMRequestRejected as exc:
            return StructuredOutput(False, f"the server refused response_format: {exc}")
        except LLMError as exc:
            return StructuredOutput(None, f"could not probe: {type(exc).__name__}: {exc}")
        text = result.texts[0] if result.texts else ""
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return StructuredOutput(True, "answers follow the requested JSON schema")
        return StructuredOutput(False, f"asked for a JSON object, got {_excerpt(text.encode())}")

    def chat(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        n: int = 1,
        max_tokens: int = 512,
        temperature: float = 0.7,
        response_format: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> ChatResult:
        """One chat completion with ``n`` samples; raises an :class:`LLMError` on failure.

        ``seed`` makes sampling reproducible on servers that support it (vLLM does).
        """
        def send() -> Any:
            return self._sdk.chat.completions.with_raw_response.create(
                model=self.config.model, messages=[cast(Any, dict(m)) for m in messages], n=n,
                max_tokens=max_tokens, temperature=temperature, extra_headers=self._headers,
                response_format=(cast(Any, dict(response_format)) if response_format is not None
                                 else openai.omit),
                seed=seed if seed is not None else openai.omit)

        started = self._clock()
        texts, reasons, prompt_tokens, completion_tokens = self._call(
            "POST /v1/chat/completions", send, _parse_chat)
        if self.metrics is not None:
            self.metrics.llm_tokens.labels("prompt").inc(prompt_tokens)
            self.metrics.llm_tokens.labels("completion").inc(completion_tokens)
        return ChatResult(texts, prompt_tokens, completion_tokens, self._clock() - started,
                          reasons)

    # -- one call: breaker, retries, attempts --------------------------------------------------

    def _call(self, what: str, send: Callable[[], R], parse: Callable[[R], T], *,
              retry: bool = True, guarded: bool = True) -> T:
        if guarded and not self.breaker.allow():
            self._count("breaker_open")
            raise LLMCircuitOpen(f"model server at {self.base_url} failed repeatedly; circuit "
                                 f"open, next trial in {self.breaker.retry_in():.0f} s")
        attempts = 1 + (max(0, self.config.max_retries) if retry else 0)
        runner = retrying(self.config, attempts, sleep=self._sleep, random=self._random)
        failed = True
        try:
            result: T = runner(self._attempt, what, send, parse)
            failed = False
            return result
        except LLMServerBusy as exc:
            if asks_too_long(exc, self.config):
                raise LLMUnavailable(
                    f"{exc}; it asked to retry after {exc.retry_after:.0f} s, longer "
                    f"than the {self.config.max_retry_after:.0f} s we wait") from exc
            raise
        except (LLMRequestRejected, LLMBadResponse):
            failed = False  # the server is up; it is this request or answer that is bad
            raise
        finally:
            if guarded:
                if failed:
                    self.breaker.record_failure()
                else:
                    self.breaker.record_success()

    def _attempt(self, what: str, send: Callable[[], R], parse: Callable[[R], T]) -> T:
        """One request and the reading of its answer, counted by outcome."""
        started = self._clock()
        try:
            try:
                answer = send()  # the exchange only: answers come back raw, not yet decoded
            except openai.OpenAIError as exc:
                _raise_ours(what, self.base_url, self._clock() - started, exc)
            finally:
                if self.metrics is not None:
                    self.metrics.llm_seconds.observe(self._clock() - started)
            try:
                result = parse(answer)
            except (ValueError, TypeError, KeyError, AttributeError, IndexError,
                    openai.OpenAIError) as exc:
                # Decoding a body that is not JSON fails with a ValueError; one of the
                # wrong shape fails anywhere, as the SDK builds its answer objects
                # without validating them (servers vary in the optional fields they
                # fill) and breaks on, or hands us, whatever it found.
                body = answer.http_response.content if hasattr(answer, "http_response") else b""
                raise LLMBadResponse(f"{what} answered something unusable: "
                                     f"{type(exc).__name__}: {exc}; body starts "
                                     f"{_excerpt(body)}") from exc
        except LLMError as exc:  # also the guard's cap and deadline, raised under the SDK
            self._count(_result(exc))
            raise
        self._count("ok")
        return result

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.llm_requests.labels(result).inc()

    def _set_up(self, up: bool) -> None:
        if self.metrics is not None:
            self.metrics.llm_up.set(1 if up else 0)


# -- the boundary: third-party errors become ours -------------------------------------------

def _raise_ours(what: str, base_url: str, seconds: float, exc: openai.OpenAIError) -> NoReturn:
    """Raises the error of our tree that an SDK error from an exchange stands for."""
    if isinstance(exc, openai.APITimeoutError):
        cause = exc.__cause__ or exc
        raise LLMTimeout(f"{what} timed out after {seconds:.1f} s "
                         f"({type(cause).__name__})") from cause
    if isinstance(exc, openai.APIConnectionError):
        # the SDK's wrapper only says "Connection error."; the transport's error says which
        cause = exc.__cause__ or exc
        raise LLMUnavailable(f"{what} to {base_url} failed: "
                             f"{type(cause).__name__}: {cause}") from cause
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status == 429 or status >= 500:
            raise LLMServerBusy(f"{what} answered HTTP {status}", status, retry_after(
                exc.response.headers.get("retry-after"))) from exc
        hint = " (check llm.api_key_env / llm.api_key_file)" if status in (401, 403) else ""
        raise LLMRequestRejected(f"{what} answered HTTP {status}{hint}: "
                                 f"{_excerpt(exc.response.content)}", status) from exc
    raise LLMBadResponse(f"{what} answered something unusable: "
                         f"{type(exc).__name__}: {exc}") from exc


def _result(exc: LLMError) -> str:
    """The ``result`` label of ``selfmod_llm_requests_total`` for an attempt that failed."""
    if isinstance(exc, LLMServerBusy):
        return "http_429" if exc.status_code == 429 else "http_5xx"
    if isinstance(exc, LLMTimeout):
        return "timeout"
    if isinstance(exc, LLMUnavailable):
        return "connect_error"
    if isinstance(exc, LLMRequestRejected):
        return "http_4xx"
    return "bad_response"


# -- response shapes ----------------------------------------------------------------------------

def _parse_models(raw: Any) -> dict[str, int | None]:
    """Served model ids, each with its context length where the server says.

    vLLM lists ``max_model_len``; llama.cpp's server puts ``n_ctx`` (or
    ``n_ctx_train``) under ``meta``; others say nothing.
    """
    data = raw.parse().data
    if not isinstance(data, list):
        raise LLMBadResponse("/v1/models: 'data' is not a list")
    ids = [entry.id for entry in data]
    if not all(isinstance(i, str) for i in ids):
        raise LLMBadResponse("/v1/models: a model id is not a string")
    return {entry.id: _context_length(entry.model_extra or {}) for entry in data}


def _context_length(extra: Mapping[str, Any]) -> int | None:
    meta = extra.get("meta")
    for value in (extra.get("max_model_len"),
                  *((meta.get("n_ctx"), meta.get("n_ctx_train")) if isinstance(meta, dict)
                    else ())):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _parse_chat(raw: Any) -> tuple[list[str], list[str], int, int]:
    completion = raw.parse()
    choices = completion.choices
    if not isinstance(choices, list) or not choices:
        raise LLMBadResponse("chat completion has no choices")
    ordered = sorted(choices, key=lambda c: c.index if isinstance(c.index, int) else 0)
    texts: list[str] = []
    reasons: list[str] = []
    for choice in ordered:
        content = choice.message.content
        if content is not None and not isinstance(content, str):
            raise LLMBadResponse("chat completion: message content is not a string")
        texts.append(content or "")
        reasons.append(str(choice.finish_reason or ""))
    usage = completion.usage
    prompt_tokens = (usage.prompt_tokens if usage is not None else None) or 0
    completion_tokens = (usage.completion_tokens if usage is not None else None) or 0
    if not isinstance(prompt_tokens, int) or not isinstance(completion_tokens, int):
        raise LLMBadResponse("chat completion: token counts are not integers")
    return texts, reasons, prompt_tokens, completion_tokens


def _excerpt(raw: bytes, limit: int = 200) -> str:
    text = raw[:limit].decode("utf-8", "replace")
    return repr(text + ("…" if len(raw) > limit else ""))

