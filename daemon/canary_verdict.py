"""The canary's decision: plain functions from two windows of live calls to a verdict.

:func:`verdict` judges a finished canary window against the baseline taken on
the previous code; :func:`early_verdict` finds a regression the rest of a
window could not undo, so the canary can stop watching at once. The windows
are values (:class:`Window`), the limits come from the policy's ``canary``
section (:meth:`CanaryLimits.from_policy`), and nothing here touches a
process, a clock or a thread: :mod:`daemon.canary` runs the windows.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from envelope.policy import Canary as CanaryPolicy

LATENCY = "canary_latency"
ERRORS = "canary_errors"
MISMATCH = "canary_mismatch"

# Fewer calls than this in either window and a median says little: latency is then
# not judged (errors and mismatches still are). The policy does not expose it.
MIN_LATENCY_CALLS = 20


@dataclass(frozen=True)
class CanaryLimits:
    """The policy's canary section, plus the two settings the policy does not expose.

    Built from the policy only (:meth:`from_policy`), so its defaults are the
    policy's; change one with :func:`dataclasses.replace`.
    """

    calls: int
    seconds: float
    max_latency_ratio: float
    max_error_rate_increase: float
    compare_sample: float
    # The baseline is a short look at the code about to be replaced, since it delays
    # the swap it precedes: a quarter of the canary's window, stretched up to the whole
    # window while it has fewer than min_latency_calls calls.
    baseline_seconds: float
    min_latency_calls: int = MIN_LATENCY_CALLS

    @classmethod
    def from_policy(cls, canary: CanaryPolicy) -> CanaryLimits:
        """The limits of the policy's ``canary`` section (``Canary()``: the defaults)."""
        return cls(calls=canary.calls, seconds=canary.seconds,
                   max_latency_ratio=canary.max_latency_ratio,
                   max_error_rate_increase=canary.max_error_rate_increase,
                   compare_sample=canary.compare_sample, baseline_seconds=canary.seconds / 4)


@dataclass(frozen=True)
class Mismatch:
    """One live call whose outcome on the new code differed from the previous code's."""

    call: str  # the arguments, as a bounded repr
    kind: str  # invariants.compare.Difference.kind
    previous: str
    new: str


@dataclass(frozen=True)
class Window:
    """What one probe window saw: the evidence a verdict is made of."""

    calls: int = 0
    errors: int = 0
    latencies: tuple[float, ...] = ()  # seconds per call, in arrival order
    compared: int = 0
    mismatches: tuple[Mismatch, ...] = ()
    seconds: float = 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0

    @property
    def median_latency(self) -> float | None:
        return statistics.median(self.latencies) if self.latencies else None


@dataclass(frozen=True)
class Passed:
    """The new version held up; ``note`` says what was not judged, and why."""

    latency_ratio: float | None
    error_rate_increase: float
    note: str = ""


@dataclass(frozen=True)
class Regressed:
    """The new version did worse; ``reason`` is the rollback reason, ``detail`` the evidence."""

    reason: str  # canary_latency | canary_errors | canary_mismatch
    detail: str


Verdict = Passed | Regressed


# -- the decision ---------------------------------------------------------------------


def verdict(baseline: Window, canary: Window, limits: CanaryLimits) -> Verdict:
    """Judge a finished canary window against the baseline: mismatches, then errors, latency."""
    early = early_verdict(baseline, canary, limits, remaining_calls=0)
    if early is not None:
        return early
    increase = canary.error_rate - baseline.error_rate
    ratio = _latency_ratio(baseline, canary, limits)
    if ratio is not None and ratio > limits.max_latency_ratio:
        before, after = baseline.median_latency, canary.median_latency
        assert before is not None and after is not None
        return Regressed(LATENCY, f"median latency {ratio:.2f}x the previous code's "
                                  f"({_ms(after)} vs {_ms(before)} over {canary.calls} and "
                                  f"{baseline.calls} calls); the limit is "
                                  f"{limits.max_latency_ratio:g}x")
    notes = []
    if ratio is None:
        notes.append(f"latency not judged: {canary.calls} calls after the swap and "
                     f"{baseline.calls} before, {limits.min_latency_calls} needed in each")
    if canary.calls == 0:
        notes.append("no live calls during the window")
    return Passed(ratio, increase, "; ".join(notes))


def early_verdict(baseline: Window, partial: Window, limits: CanaryLimits,
                  remaining_calls: int | None = None) -> Regressed | None:
    """A regression that the rest of the window could not undo, or None.

    A mismatch is final at once. An error rate is final when even
    ``remaining_calls`` more calls without an error would leave it above the
    limit (``None``: as many as the window still expects).
    """
    if partial.mismatches:
        first = partial.mismatches[0]
        return Regressed(MISMATCH, f"{len(partial.mismatches)} of {partial.compared} compared "
                                   f"calls differ ({first.kind}); first: called with "
                                   f"{first.call}, previous: {first.previous}; new: "
                                   f"{first.new}")
    if partial.errors == 0:
        return None
    remaining = (max(limits.calls - partial.calls, 0) if remaining_calls is None
                 else remaining_calls)
    lowest_rate = partial.errors / (partial.calls + remaining)
    if lowest_rate - baseline.error_rate > limits.max_error_rate_increase:
        return Regressed(ERRORS, f"{partial.errors} of {partial.calls} calls raised "
                                 f"({partial.error_rate:.1%}) against {baseline.errors} of "
                                 f"{baseline.calls} ({baseline.error_rate:.1%}) before the "
                                 f"swap; the limit is +{limits.max_error_rate_increase:.1%}")
    return None


def _latency_ratio(baseline: Window, canary: Window, limits: CanaryLimits) -> float | None:
    if min(len(baseline.latencies), len(canary.latencies)) < limits.min_latency_calls:
        return None
    before, after = baseline.median_latency, canary.median_latency
    if not before or after is None:
        return None
    return after / before


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3f} ms"
