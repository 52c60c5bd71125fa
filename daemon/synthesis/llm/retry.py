"""When a model request is tried again, and after how long: tenacity, configured for us.

tenacity runs the attempts, stops after the last one and sleeps through the
``sleep`` it is given. Retried: no answer at all (connection error, timeout)
and :class:`~daemon.synthesis.llm.errors.LLMServerBusy` (429, 5xx); never a
request the server refused or an answer we refused, which would only come
back the same. A server asking, with ``Retry-After``, for a longer wait than
``max_retry_after`` is not waited for.

Two small parts are ours, because neither library has them:

- the wait is "equal jitter" (half the exponential step, plus up to half
  again at random), drawn from the ``random`` passed in; tenacity's jittered
  waits add full jitter from the module-level ``random``, which tests cannot
  pin. The exponential step itself is tenacity's.
- :func:`retry_after` reads the header: the SDK parses it only inside its own
  retry loop, which the client switches off, and tenacity knows nothing of
  HTTP.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

import tenacity

from daemon.synthesis.llm.errors import LLMServerBusy, LLMTimeout, LLMUnavailable


class RetrySettings(Protocol):
    """The fields of :class:`~daemon.synthesis.llm.client.ClientConfig` read here."""

    @property
    def backoff_base(self) -> float: ...
    @property
    def backoff_max(self) -> float: ...
    @property
    def max_retry_after(self) -> float: ...


def retrying(settings: RetrySettings, attempts: int, *, sleep: Callable[[float], None],
             random: Callable[[], float]) -> tenacity.Retrying:
    """A tenacity runner for one call of at most ``attempts`` attempts; it re-raises the last
    attempt's error. Build one per call: a runner keeps the state of the call it runs."""
    step = tenacity.wait_exponential(multiplier=settings.backoff_base, max=settings.backoff_max)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, LLMServerBusy) and exc.retry_after is not None:
            return exc.retry_after
        ceiling = step(state)
        return ceiling / 2 + random() * ceiling / 2

    def worth_retrying(exc: BaseException) -> bool:
        if isinstance(exc, LLMServerBusy) and asks_too_long(exc, settings):
            return False
        return isinstance(exc, LLMUnavailable | LLMTimeout)

    return tenacity.Retrying(stop=tenacity.stop_after_attempt(attempts), wait=wait,
                             retry=tenacity.retry_if_exception(worth_retrying), sleep=sleep,
                             reraise=True)


def asks_too_long(exc: LLMServerBusy, settings: RetrySettings) -> bool:
    """True when the server asked for a longer wait than we are willing to give it."""
    return exc.retry_after is not None and exc.retry_after > settings.max_retry_after


def retry_after(value: str | None, now: Callable[[], datetime] = lambda: datetime.now(UTC)
                ) -> float | None:
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
    return max(0.0, (when - now()).total_seconds())
