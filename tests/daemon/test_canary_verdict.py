"""Tests for daemon.canary_verdict: the canary's decision over windows, and its limits."""

from __future__ import annotations

from dataclasses import replace

import pytest

from daemon.canary import is_pure
from daemon.canary_verdict import (
    ERRORS,
    LATENCY,
    MISMATCH,
    CanaryLimits,
    Mismatch,
    Passed,
    Regressed,
    Window,
    early_verdict,
    verdict,
)
from envelope.policy import DEFAULT_POLICY
from envelope.policy import Canary as CanaryPolicy

LIMITS = replace(CanaryLimits.from_policy(CanaryPolicy(
    calls=100, seconds=5.0, max_latency_ratio=1.5, max_error_rate_increase=0.01,
    compare_sample=0.5)), min_latency_calls=20)


def window(calls: int, latency: float = 1e-3, errors: int = 0,
           mismatches: tuple[Mismatch, ...] = (), compared: int = 0) -> Window:
    return Window(calls=calls, errors=errors, latencies=(latency,) * calls, compared=compared,
                  mismatches=mismatches)


# -- the verdict ---------------------------------------------------------------------------


def test_a_version_as_fast_and_as_reliable_passes():
    """Equal latency and no new errors pass, with the measured ratio."""
    result = verdict(window(100, 1e-3, errors=1), window(100, 1.2e-3, errors=1), LIMITS)
    assert isinstance(result, Passed)
    assert result.latency_ratio == pytest.approx(1.2)
    assert result.error_rate_increase == 0.0 and result.note == ""


def test_a_slower_median_latency_is_a_latency_regression():
    """A median above the allowed ratio rolls back, with both medians in the evidence."""
    result = verdict(window(100, 1e-3), window(100, 3e-3), LIMITS)
    assert isinstance(result, Regressed) and result.reason == LATENCY
    assert "3.00x" in result.detail and "1.5x" in result.detail


def test_the_median_ignores_a_few_stalled_calls():
    """A handful of very slow calls (a GC pause, a preempted thread) do not move the median."""
    stalled = Window(calls=100, latencies=(1e-3,) * 90 + (1.0,) * 10)
    assert isinstance(verdict(window(100, 1e-3), stalled, LIMITS), Passed)


def test_latency_is_not_judged_on_too_few_calls():
    """Fewer calls than min_latency_calls in a window pass, saying latency was not judged."""
    result = verdict(window(100, 1e-3), window(5, 9e-3), LIMITS)
    assert isinstance(result, Passed) and result.latency_ratio is None
    assert "latency not judged" in result.note
    empty = verdict(Window(), Window(), LIMITS)
    assert isinstance(empty, Passed) and "no live calls" in empty.note


def test_an_error_rate_above_the_baseline_is_an_error_regression():
    """Five percent of calls raising where none did is more than the one percent allowed."""
    result = verdict(window(100), window(100, errors=5), LIMITS)
    assert isinstance(result, Regressed) and result.reason == ERRORS
    assert "5 of 100" in result.detail


def test_errors_the_previous_code_had_too_are_not_a_regression():
    """An error rate no higher than the baseline's (plus the allowance) passes."""
    assert isinstance(verdict(window(100, errors=10), window(100, errors=10), LIMITS), Passed)
    assert isinstance(verdict(window(100), window(200, errors=2), LIMITS), Passed)


def test_a_single_mismatch_is_a_mismatch_regression_before_anything_else():
    """One differing outcome rolls back, even with slower latency, and names the input."""
    mismatch = Mismatch("((40, 2), {})", "value", "42", "43")
    result = verdict(window(100), window(100, 9e-3, errors=50, mismatches=(mismatch,),
                                         compared=30), LIMITS)
    assert isinstance(result, Regressed) and result.reason == MISMATCH
    assert "1 of 30" in result.detail and "((40, 2), {})" in result.detail
    assert "42" in result.detail and "43" in result.detail


def test_early_verdict_is_given_only_when_the_rest_of_the_window_cannot_undo_it():
    """Errors end the window early once even error-free remaining calls keep the rate too high."""
    assert early_verdict(window(100), window(10, errors=1), LIMITS) is None  # 1/100 at best
    certain = early_verdict(window(100), window(10, errors=2), LIMITS)  # 2/100 at best
    assert isinstance(certain, Regressed) and certain.reason == ERRORS
    assert early_verdict(window(100), window(10), LIMITS) is None
    mismatch = Mismatch("()", "value", "1", "2")
    found = early_verdict(window(100), window(1, mismatches=(mismatch,)), LIMITS)
    assert isinstance(found, Regressed) and found.reason == MISMATCH


def test_limits_follow_the_policy_and_pure_follows_its_globs():
    """The policy's canary section maps onto the limits; pure globs match targets."""
    limits = CanaryLimits.from_policy(DEFAULT_POLICY.canary)
    assert (limits.calls, limits.seconds, limits.compare_sample) == (
        DEFAULT_POLICY.canary.calls, DEFAULT_POLICY.canary.seconds,
        DEFAULT_POLICY.canary.compare_sample)
    assert limits.baseline_seconds < limits.seconds
    assert is_pure("shop.prices:total", ["shop.*"]) and not is_pure("shop.prices:total", [])


def test_limits_have_no_defaults_of_their_own_for_what_the_policy_sets():
    """Limits come only from the policy: its defaults, compare_sample included, are theirs."""
    assert CanaryLimits.from_policy(CanaryPolicy()).compare_sample == CanaryPolicy().compare_sample
    with pytest.raises(TypeError):
        CanaryLimits()  # type: ignore[call-arg]
