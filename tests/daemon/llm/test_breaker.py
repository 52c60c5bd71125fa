"""The circuit breaker's states, driven by a hand-moved clock."""

from __future__ import annotations

import pytest

from daemon.synthesis.llm.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_closed_until_threshold_consecutive_failures() -> None:
    """Failures below the threshold keep it closed; a success resets the count."""
    breaker = CircuitBreaker(threshold=3, cooldown=10, clock=Clock())
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()


def test_half_open_lets_exactly_one_trial_through() -> None:
    """After the cool-down one caller gets the trial; the others are refused until it reports."""
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown=10, clock=clock)
    breaker.record_failure()
    assert breaker.retry_in() == 10
    clock.now = 10
    assert breaker.state == "half-open" and breaker.retry_in() == 0
    assert breaker.allow()
    assert not breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


def test_failed_trial_starts_a_new_cooldown() -> None:
    """A failing trial re-opens the breaker from the time it failed."""
    clock = Clock()
    breaker = CircuitBreaker(threshold=5, cooldown=10, clock=clock)
    for _ in range(5):
        breaker.record_failure()
    clock.now = 15
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and breaker.retry_in() == 10
    clock.now = 25
    assert breaker.state == "half-open"


def test_threshold_must_be_positive() -> None:
    """A breaker that can never close or never open is a configuration mistake."""
    with pytest.raises(ValueError):
        CircuitBreaker(threshold=0)
