"""The client's retry policy on its own: which failures are retried, the waits, Retry-After."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta

import pytest

from daemon.synthesis.llm import (
    ClientConfig,
    LLMBadResponse,
    LLMError,
    LLMRequestRejected,
    LLMServerBusy,
    LLMTimeout,
    LLMUnavailable,
)
from daemon.synthesis.llm.retry import retry_after, retrying

CONFIG = ClientConfig(backoff_base=0.5, backoff_max=4.0, max_retry_after=30.0)


class Script:
    """Raises the scripted errors in turn, then returns "done"; remembers the sleeps."""

    def __init__(self, *errors: LLMError) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.sleeps: list[float] = []

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def run(script: Script, attempts: int, jitter: float = 0.5) -> str:
    runner = retrying(CONFIG, attempts, sleep=script.sleeps.append, random=lambda: jitter)
    result: str = runner(script)
    return result


@pytest.mark.parametrize("jitter,expected", [
    (0.0, [0.25, 0.5, 1.0, 2.0, 2.0]),
    (1.0, [0.5, 1.0, 2.0, 4.0, 4.0]),
])
def test_waits_grow_exponentially_with_equal_jitter_up_to_the_maximum(
        jitter: float, expected: list[float]) -> None:
    """Each wait is half the doubling step plus up to half again, the step capped at backoff_max."""
    script = Script(*[LLMUnavailable("down")] * 5)
    assert run(script, attempts=6, jitter=jitter) == "done"
    assert script.sleeps == expected


@pytest.mark.parametrize("error", [
    LLMUnavailable("refused"), LLMTimeout("slow"), LLMServerBusy("HTTP 503", 503),
])
def test_no_answer_is_retried(error: LLMError) -> None:
    """Connection errors, timeouts and 429/5xx answers get another attempt."""
    script = Script(error)
    assert run(script, attempts=2) == "done"
    assert script.calls == 2 and len(script.sleeps) == 1


@pytest.mark.parametrize("error", [
    LLMRequestRejected("HTTP 400", 400), LLMBadResponse("not JSON"),
    LLMServerBusy("HTTP 429", 429, retry_after=31.0),
])
def test_refusals_and_long_retry_after_are_not_retried(error: LLMError) -> None:
    """A refused request or answer, or a Retry-After past max_retry_after, ends the call at once."""
    script = Script(error)
    with pytest.raises(type(error)) as caught:
        run(script, attempts=3)
    assert caught.value is error
    assert script.calls == 1 and script.sleeps == []


def test_retry_after_replaces_the_backoff() -> None:
    """The server's Retry-After is the wait, whatever the backoff step would have been."""
    script = Script(LLMServerBusy("HTTP 429", 429, retry_after=7.0))
    assert run(script, attempts=2) == "done"
    assert script.sleeps == [7.0]


def test_the_last_error_is_raised_when_attempts_run_out() -> None:
    """After the last attempt the call raises that attempt's own error, not a wrapper."""
    last = LLMServerBusy("HTTP 502", 502)
    script = Script(LLMTimeout("slow"), last)
    with pytest.raises(LLMServerBusy) as caught:
        run(script, attempts=2)
    assert caught.value is last and script.sleeps == [0.375]


NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("header,expected", [
    ("2", 2.0),
    (" 1.5 ", 1.5),
    ("-3", 0.0),
    (email.utils.format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
    (email.utils.format_datetime(NOW - timedelta(seconds=90), usegmt=True), 0.0),
    ("soon", None),
    ("", None),
    (None, None),
])
def test_retry_after_reads_seconds_or_an_http_date(header: str | None,
                                                   expected: float | None) -> None:
    """Retry-After is delta-seconds or an HTTP date; past dates mean now, garbage means none."""
    assert retry_after(header, now=lambda: NOW) == expected
