"""The model client: the ``openai`` SDK pointed at vLLM, with what a daemon adds around it.

Only three endpoints matter to selfmod: ``GET /health``, ``GET /v1/models``
and ``POST /v1/chat/completions``. The SDK builds and sends the requests and
decodes the answers; ``tenacity`` retries connection errors, timeouts, 429 and
5xx with exponential backoff and jitter, honouring ``Retry-After``. What
neither library has stays here, small:

- a response guard under the SDK (:class:`_GuardedTransport`): a cap on body
  size, counted while the body streams in, and a total deadline per attempt,
  so that a server dribbling bytes cannot hold a cycle forever;
- a circuit breaker over whole calls (:mod:`daemon.synthesis.llm.breaker`);
- the translation of every SDK and httpx error into our own tree
  (:mod:`daemon.synthesis.llm.errors`), and the metrics.

Why the SDK's own retry is switched off (``max_retries=0``): it sleeps with
``time.sleep`` and its own randomness, so neither tests nor the daemon can
pass the clock in; it follows a ``Retry-After`` of up to 60 s and silently
falls back to its own backoff for a longer one, where we give up at once when
the server asks for more than ``max_retry_after``; and the breaker must see
one outcome per call, not per attempt.

Everything the client depends on from the outside world (HTTP transport,
sleep, randomness, clock, environment) is passed in, so the fault tests run it
against a stand-in server without sleeping for real.

The API key is read once, from the environment variable or the file the
configuration names, and handed to the SDK, which sends it only as the bearer
token. The key, organisation and project the SDK would otherwise take from
``OPENAI_*`` variables are passed or omitted explicitly, so credentials meant
for another server never reach the model server. The key appears in no
message, repr or log line of ours; the configuration holds only where it
comes from.
"""

from __future__ import annotations

import email.utils
import json
import os
import random as _random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import httpx
import openai
import tenacity
from prometheus_client import Counter, Gauge, Histogram

from daemon.synthesis.llm.breaker import CircuitBreaker
from daemon.synthesis.llm.errors import (
    LLMBadResponse,
    LLMCircuitOpen,
    LLMConfigError,
    LLMError,
    LLMRequestRejected,
    LLMTimeout,
    LLMUnavailable,
)

T = TypeVar("T")
R = TypeVar("R")

# vLLM needs no key unless started with --api-key; the SDK insists on one, so
# this placeholder (vLLM's documented convention) stands in and the header is
# then omitted from every request.
_NO_KEY = "EMPTY"
# Headers the SDK fills from OPENAI_* variables when not told otherwise.
_NOT_FROM_ENVIRONMENT = {"OpenAI-Organization": openai.Omit(), "OpenAI-Project": openai.Omit()}


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


class _StatusUnavailable(LLMUnavailable):
    """A 429 or 5xx answer, remembered with the server's Retry-After, if any."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
            self._headers["Authorization"] = openai.Omit()
        guard = _GuardedTransport(transport or httpx.HTTPTransport(), config.max_response_bytes,
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
            # /health is vLLM's, not part of the OpenAI API: the SDK's generic GET reaches it
            self._call("GET /health", lambda: self._sdk.get(
                f"{self.base_url}/health", cast_to=cast(Any, httpx.Response),
                options={"headers": self._headers}), _ignore_body, retry=False, guarded=False)
            models = self._call("GET /v1/models",
                                lambda: self._sdk.models.list(extra_headers=self._headers),
                                _parse_models, retry=False, guarded=False)
        except LLMError as exc:
            self._set_up(False)
            return HealthReport(False, model, (), self._clock() - started, _describe(exc))
        latency = self._clock() - started
        if not model and models:
            model = models[0]
        if model not in models:
            self._set_up(False)
            return HealthReport(False, model, models, latency,
                                f"the server serves {', '.join(models) or 'no model'}, "
                                f"not {model}; set llm.model to one of them")
        self._set_up(True)
        return HealthReport(True, model, models, latency)

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
        options: dict[str, Any] = {}
        if response_format is not None:
            options["response_format"] = dict(response_format)
        if seed is not None:
            options["seed"] = seed

        def send() -> Any:
            return self._sdk.chat.completions.create(
                model=self.config.model, messages=[cast(Any, dict(m)) for m in messages], n=n,
                max_tokens=max_tokens, temperature=temperature, extra_headers=self._headers,
                **options)

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
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception(self._worth_retrying),
            sleep=self._sleep,
            reraise=True,
        )
        failed = True
        try:
            result: T = retrying(self._attempt, what, send, parse)
            failed = False
            return result
        except _StatusUnavailable as exc:
            if exc.retry_after is not None and exc.retry_after > self.config.max_retry_after:
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

    def _worth_retrying(self, exc: BaseException) -> bool:
        """No answer (connection, timeout, 429, 5xx) is worth another try, unless the
        server asked us to wait longer than we are willing to."""
        if isinstance(exc, _StatusUnavailable) and exc.retry_after is not None:
            return exc.retry_after <= self.config.max_retry_after
        return isinstance(exc, LLMUnavailable | LLMTimeout)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """The server's Retry-After when it gave one, else exponential backoff with jitter.

        The jitter is "equal jitter", never less than half the step, so retries
        stay spread out; tenacity's own jittered waits draw from the module-level
        ``random`` and add full jitter, so the step comes from tenacity and the
        jitter from the ``random`` passed in.
        """
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _StatusUnavailable) and exc.retry_after is not None:
            return exc.retry_after
        ceiling = tenacity.wait_exponential(multiplier=self.config.backoff_base,
                                            max=self.config.backoff_max)(state)
        return ceiling / 2 + self._random() * ceiling / 2

    def _attempt(self, what: str, send: Callable[[], R], parse: Callable[[R], T]) -> T:
        """One request: the SDK's errors become ours here, and nowhere else."""
        started = self._clock()
        try:
            answer = send()
        except openai.APITimeoutError as exc:
            self._count("timeout")
            cause = exc.__cause__ or exc
            raise LLMTimeout(f"{what} timed out after {self._clock() - started:.1f} s "
                             f"({type(cause).__name__})") from cause
        except openai.APIConnectionError as exc:
            # the SDK's wrapper only says "Connection error."; the transport's error says which
            self._count("connect_error")
            cause = exc.__cause__ or exc
            raise LLMUnavailable(f"{what} to {self.base_url} failed: "
                                 f"{type(cause).__name__}: {cause}") from cause
        except openai.APIStatusError as exc:
            raise self._status_error(what, exc) from exc
        except (openai.OpenAIError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._count("bad_response")
            raise LLMBadResponse(f"{what} answered something unusable: "
                                 f"{type(exc).__name__}: {exc}") from exc
        except LLMTimeout:  # the guard's total deadline
            self._count("timeout")
            raise
        except LLMBadResponse:  # the guard's size cap
            self._count("bad_response")
            raise
        finally:
            if self.metrics is not None:
                self.metrics.llm_seconds.observe(self._clock() - started)
        try:
            result = parse(answer)
        except (TypeError, KeyError, AttributeError, IndexError, LLMBadResponse) as exc:
            # The SDK builds its answer objects without validating them (vLLM and
            # other servers vary in the optional fields they fill), so a body of
            # the wrong shape shows up here, as we read the few fields we use.
            self._count("bad_response")
            if isinstance(exc, LLMBadResponse):
                raise
            raise LLMBadResponse(f"{what} answered something unusable: "
                                 f"{type(exc).__name__}: {exc}") from exc
        self._count("ok")
        return result

    def _status_error(self, what: str, exc: openai.APIStatusError) -> LLMError:
        status = exc.status_code
        if status == 429 or status >= 500:
            self._count("http_429" if status == 429 else "http_5xx")
            return _StatusUnavailable(f"{what} answered HTTP {status}",
                                      _retry_after(exc.response.headers.get("retry-after")))
        self._count("http_4xx")
        hint = " (check llm.api_key_env / llm.api_key_file)" if status in (401, 403) else ""
        return LLMRequestRejected(f"{what} answered HTTP {status}{hint}: "
                                  f"{_excerpt(exc.response.content)}", status)

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.llm_requests.labels(result).inc()

    def _set_up(self, up: bool) -> None:
        if self.metrics is not None:
            self.metrics.llm_up.set(1 if up else 0)


# -- the response guard, below the SDK ----------------------------------------------------------

class _GuardedTransport(httpx.BaseTransport):
    """Caps each response body's size and each attempt's total time, under the SDK.

    Hand-written because neither the SDK nor httpx has either limit: the SDK
    reads a whole body into memory, whatever its size, before it looks at it
    (error bodies included), and httpx's timeouts are per operation (connect,
    each read), so a server sending one byte a second never trips them. Sitting
    at the transport, the guard sees every response the SDK asks for, counts
    the bytes as they arrive and stops reading at the cap or the deadline.
    Bytes are counted on the wire, so the client asks for uncompressed bodies
    and refuses a compressed one: what it would inflate to is not bounded.
    """

    def __init__(self, inner: httpx.BaseTransport, cap: int, total_timeout: float,
                 clock: Callable[[], float]) -> None:
        self._inner = inner
        self._cap = cap
        self._total_timeout = total_timeout
        self._clock = clock

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = self._clock()
        response = self._inner.handle_request(request)
        declared = response.headers.get("content-length", "")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if declared.isdigit() and int(declared) > self._cap:
            response.close()
            raise LLMBadResponse(f"response of {declared} bytes is over the {self._cap}-byte cap")
        if encoding != "identity":
            response.close()
            raise LLMBadResponse(f"response compressed with {encoding!r} though we asked for "
                                 "none; its size after inflating cannot be capped")
        response.stream = _GuardedStream(cast(httpx.SyncByteStream, response.stream), self._cap,
                                         started + self._total_timeout, self._total_timeout,
                                         self._clock)
        return response

    def close(self) -> None:
        self._inner.close()


class _GuardedStream(httpx.SyncByteStream):
    """A response body that stops at the size cap or the attempt's deadline."""

    def __init__(self, inner: httpx.SyncByteStream, cap: int, deadline: float,
                 total_timeout: float, clock: Callable[[], float]) -> None:
        self._inner = inner
        self._cap = cap
        self._deadline = deadline
        self._total_timeout = total_timeout
        self._clock = clock

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self._inner:
            seen += len(chunk)
            if seen > self._cap:
                raise LLMBadResponse(f"response body passed the {self._cap}-byte cap; "
                                     "not read further")
            if self._clock() > self._deadline:
                raise LLMTimeout(f"response still arriving after {self._total_timeout} s")
            yield chunk

    def close(self) -> None:
        self._inner.close()


# -- response shapes ----------------------------------------------------------------------------

def _ignore_body(answer: object) -> None:
    return None


def _parse_models(page: Any) -> tuple[str, ...]:
    data = page.data
    if not isinstance(data, list):
        raise LLMBadResponse("/v1/models: 'data' is not a list")
    ids = tuple(entry.id for entry in data)
    if not all(isinstance(i, str) for i in ids):
        raise LLMBadResponse("/v1/models: a model id is not a string")
    return ids


def _parse_chat(completion: Any) -> tuple[list[str], list[str], int, int]:
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


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or bad.

    Hand-written: the SDK parses the header only inside its own retry loop,
    which is switched off, and tenacity knows nothing of HTTP.
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _excerpt(raw: bytes, limit: int = 200) -> str:
    text = raw[:limit].decode("utf-8", "replace")
    return repr(text + ("…" if len(raw) > limit else ""))


def _describe(exc: LLMError) -> str:
    return f"{type(exc).__name__}: {exc}"
