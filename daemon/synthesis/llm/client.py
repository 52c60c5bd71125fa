"""A small client for vLLM's OpenAI-compatible HTTP API.

Only three endpoints matter to selfmod: ``GET /health``, ``GET /v1/models``
and ``POST /v1/chat/completions``. The client adds what a daemon needs around
them and nothing more: timeouts (connect, read, and a total deadline so that a
server dribbling bytes cannot hold a cycle forever), retries with exponential
backoff and jitter on connection errors, timeouts, 429 and 5xx (a
``Retry-After`` header is honoured), a circuit breaker over whole calls, a cap
on response size that is enforced while the body streams in, and metrics.

Everything the client depends on from the outside world (HTTP transport,
sleep, randomness, clock, environment) is passed in, so the fault tests run it
against a stand-in server without sleeping for real.

The API key is read once, from the environment variable or the file the
configuration names. It lives in a private holder whose repr is redacted, is
sent only in the ``Authorization`` header, and appears in no message, repr or
log line; the configuration object holds only where the key comes from.
"""

from __future__ import annotations

import email.utils
import json
import os
import random as _random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
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


class _Secret:
    """Holds the API key so that no repr, str or traceback local shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__


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
        self._key = _Secret(key) if key else None
        self._sleep = sleep
        self._random = random
        self._clock = clock
        timeout = httpx.Timeout(connect=config.connect_timeout, read=config.read_timeout,
                                write=config.read_timeout, pool=config.connect_timeout)
        # trust_env=False: a proxy from the environment must not reroute model traffic.
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                  trust_env=False, follow_redirects=False)

    def __repr__(self) -> str:
        return f"LLMClient(base_url={self.base_url!r}, model={self.config.model!r})"

    def close(self) -> None:
        self._http.close()

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
            self._call("GET", "/health", None, _ignore_body, retry=False, guarded=False,
                       expect_json=False)
            models = self._call("GET", "/v1/models", None, _parse_models, retry=False,
                                guarded=False)
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
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": [dict(m) for m in messages],
            "n": n,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if response_format is not None:
            body["response_format"] = dict(response_format)
        if seed is not None:
            body["seed"] = seed
        started = self._clock()
        texts, reasons, prompt_tokens, completion_tokens = self._call(
            "POST", "/v1/chat/completions", body, _parse_chat)
        if self.metrics is not None:
            self.metrics.llm_tokens.labels("prompt").inc(prompt_tokens)
            self.metrics.llm_tokens.labels("completion").inc(completion_tokens)
        return ChatResult(texts, prompt_tokens, completion_tokens, self._clock() - started,
                          reasons)

    # -- the retry loop -----------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any, parse: Callable[[Any], T], *,
              retry: bool = True, guarded: bool = True, expect_json: bool = True) -> T:
        if guarded and not self.breaker.allow():
            self._count("breaker_open")
            raise LLMCircuitOpen(f"model server at {self.base_url} failed repeatedly; circuit "
                                 f"open, next trial in {self.breaker.retry_in():.0f} s")
        attempts = 1 + (max(0, self.config.max_retries) if retry else 0)
        failed = True
        try:
            for attempt in range(attempts):
                try:
                    result = self._attempt(method, path, body, parse, expect_json)
                except (LLMUnavailable, LLMTimeout) as exc:
                    delay = self._retry_delay(exc, attempt)
                    if delay is None and isinstance(exc, _StatusUnavailable):
                        raise LLMUnavailable(
                            f"{exc}; it asked to retry after {exc.retry_after:.0f} s, longer "
                            f"than the {self.config.max_retry_after:.0f} s we wait") from exc
                    if attempt + 1 >= attempts or delay is None:
                        raise
                    self._sleep(delay)
                    continue
                except (LLMRequestRejected, LLMBadResponse):
                    failed = False  # the server is up; it is this request or answer that is bad
                    raise
                failed = False
                return result
            raise AssertionError("unreachable: the last attempt returns or raises")
        finally:
            if guarded:
                if failed:
                    self.breaker.record_failure()
                else:
                    self.breaker.record_success()

    def _retry_delay(self, exc: LLMError, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None when waiting is pointless."""
        retry_after = exc.retry_after if isinstance(exc, _StatusUnavailable) else None
        if retry_after is not None:
            return retry_after if retry_after <= self.config.max_retry_after else None
        ceiling = min(self.config.backoff_max, self.config.backoff_base * 2.0 ** attempt)
        # "equal jitter": never less than half the step, so retries stay spread out
        return ceiling / 2 + self._random() * ceiling / 2

    def _attempt(self, method: str, path: str, body: Any, parse: Callable[[Any], T],
                 expect_json: bool) -> T:
        started = self._clock()
        try:
            with self._http.stream(method, path, json=body, headers=self._headers()) as response:
                status = response.status_code
                if status == 429 or status >= 500:
                    self._count("http_429" if status == 429 else "http_5xx")
                    raise _StatusUnavailable(
                        f"{method} {path} answered HTTP {status}",
                        _retry_after(response.headers.get("retry-after")))
                raw = self._read_capped(response, started)
        except httpx.TimeoutException as exc:
            self._count("timeout")
            raise LLMTimeout(f"{method} {path} timed out after "
                             f"{self._clock() - started:.1f} s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            self._count("connect_error")
            raise LLMUnavailable(f"{method} {self.base_url}{path} failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
        except LLMTimeout:
            self._count("timeout")
            raise
        except LLMBadResponse:
            self._count("bad_response")
            raise
        finally:
            if self.metrics is not None:
                self.metrics.llm_seconds.observe(self._clock() - started)
        if status >= 400:
            self._count("http_4xx")
            hint = (" (check llm.api_key_env / llm.api_key_file)" if status in (401, 403)
                    else "")
            raise LLMRequestRejected(f"{method} {path} answered HTTP {status}{hint}: "
                                     f"{_excerpt(raw)}", status)
        try:
            payload = json.loads(raw) if expect_json else None
            result = parse(payload)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, LLMBadResponse) as exc:
            self._count("bad_response")
            if isinstance(exc, LLMBadResponse):
                raise
            raise LLMBadResponse(f"{method} {path} answered something unusable: "
                                 f"{type(exc).__name__}: {exc}; body starts {_excerpt(raw)}"
                                 ) from exc
        self._count("ok")
        return result

    def _read_capped(self, response: httpx.Response, started: float) -> bytes:
        cap = self.config.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise LLMBadResponse(f"response of {declared} bytes is over the {cap}-byte cap")
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > cap:
                raise LLMBadResponse(f"response body passed the {cap}-byte cap; not read further")
            if self._clock() - started > self.config.total_timeout:
                raise LLMTimeout(f"response still arriving after {self.config.total_timeout} s")
        return bytes(body)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        return headers

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.llm_requests.labels(result).inc()

    def _set_up(self, up: bool) -> None:
        if self.metrics is not None:
            self.metrics.llm_up.set(1 if up else 0)


# -- response shapes ----------------------------------------------------------------------------

def _ignore_body(payload: Any) -> None:
    return None


def _parse_models(payload: Any) -> tuple[str, ...]:
    data = payload["data"]
    if not isinstance(data, list):
        raise LLMBadResponse("/v1/models: 'data' is not a list")
    ids = tuple(entry["id"] for entry in data)
    if not all(isinstance(i, str) for i in ids):
        raise LLMBadResponse("/v1/models: a model id is not a string")
    return ids


def _parse_chat(payload: Any) -> tuple[list[str], list[str], int, int]:
    choices = payload["choices"]
    if not isinstance(choices, list) or not choices:
        raise LLMBadResponse("chat completion has no choices")
    ordered = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
    texts: list[str] = []
    reasons: list[str] = []
    for choice in ordered:
        content = choice["message"]["content"]
        if content is not None and not isinstance(content, str):
            raise LLMBadResponse("chat completion: message content is not a string")
        texts.append(content or "")
        reasons.append(str(choice.get("finish_reason") or ""))
    usage = payload.get("usage") or {}
    prompt_tokens = usage.get("prompt_tokens", 0)
    completion_tokens = usage.get("completion_tokens", 0)
    if not isinstance(prompt_tokens, int) or not isinstance(completion_tokens, int):
        raise LLMBadResponse("chat completion: token counts are not integers")
    return texts, reasons, prompt_tokens, completion_tokens


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or bad."""
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
