"""Acceptance: a shadow report and the policy's minimum speedup in, a verdict out.

Pure. A candidate is accepted only when the shadow found nothing wrong (status
``ok``, no mismatch), replayed enough calls, and the *lower* bound of a
confidence interval for its speedup reaches the policy minimum.

The statistic. Each benchmark pair gives a ratio original/candidate (the pair ran
back to back, so drift in machine speed cancels). The speedup is the geometric
mean of the ratios, 10 % trimmed at each end against scheduling outliers: the
exponential of the trimmed mean of the log ratios (``scipy.stats.trim_mean``).
Its interval is ``scipy.stats.bootstrap`` over the pairs (seeded, so a verdict
is reproducible), percentile method, at Hesterberg's *expanded* confidence
level (:func:`expanded_level`): the plain interval is too narrow for the 10-20
pairs a shadow run affords, which would let an A/A comparison (the same code on
both sides) pass a minimum of 1.0 more often than the nominal 2.5 %.

Why percentile and not BCa. On the synthetic A/A timings of
``tests/invariants/test_accept.py`` (15 pairs, 10 % outlier pairs, 6000
trials) the expanded percentile interval passed a minimum of 1.0 in 1.9 % of
trials and 1.05 in 0.02 %; BCa at the same expanded level in 3.4 % and 0.2 %,
plain BCa in 4.6 % (2000 trials). BCa's acceleration is a jackknife estimate,
and the jackknife is unreliable for a trimmed mean, which moves in jumps as a
value enters or leaves the trim. Percentile intervals also stay defined when
every pair has the same ratio, where BCa's are not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from invariants.report import ShadowReport

RESAMPLES = 2000
MIN_PAIRS = 5
TRIM = 0.1


@dataclass(frozen=True)
class Accepted:
    """The candidate is faster: ``speedup`` with its interval, over ``samples`` pairs."""

    speedup: float
    ci_low: float
    ci_high: float
    samples: int
    calls: int
    confidence: float = 0.95


@dataclass(frozen=True)
class Rejected:
    """Why not. ``stage`` is ``shadow`` or ``accept``; ``reason`` is a short, stable label
    (fit for a metric), ``detail`` the sentence for people and for the proposer."""

    stage: str
    reason: str
    detail: str


def decide(report: ShadowReport, min_speedup: float, confidence: float = 0.95,
           min_calls: int = 1, seed: int = 0) -> Accepted | Rejected:
    """Accept ``report``'s candidate, or say at which stage and why not."""
    if report.status != "ok":
        return Rejected("shadow", report.status, _shadow_detail(report))
    if report.mismatches:
        return Rejected("shadow", "mismatch", _shadow_detail(report))
    if report.calls < min_calls:
        return Rejected("accept", "too_few_calls",
                        f"{report.calls} calls replayed; the policy asks for {min_calls}")
    pairs = [(o, c) for o, c in zip(report.original_times, report.candidate_times,
                                    strict=False)
             if o > 0 and c > 0 and math.isfinite(o) and math.isfinite(c)]
    if len(pairs) < MIN_PAIRS:
        return Rejected("accept", "too_few_samples",
                        f"{len(pairs)} usable benchmark pairs; at least {MIN_PAIRS} are needed")
    point, low, high = speedup_interval([o for o, _ in pairs], [c for _, c in pairs],
                                        confidence, seed)
    if low >= min_speedup:
        return Accepted(point, low, high, len(pairs), report.calls, confidence)
    return Rejected("accept", "speedup_below_minimum",
                    f"speedup {point:.3f} ({confidence:.0%} interval {low:.3f}-{high:.3f}, "
                    f"{len(pairs)} pairs, {report.calls} calls); the lower bound must reach "
                    f"{min_speedup:g}")


def _shadow_detail(report: ShadowReport) -> str:
    lines = [report.reason or report.status]
    for mismatch in report.mismatches[:3]:
        lines.append(f"call {mismatch.index} ({mismatch.kind}) with {mismatch.args_repr}: "
                     f"expected {mismatch.expected}, got {mismatch.actual}")
    lines += [f"tripwire: {event.event} by the {event.context}: {event.detail}"
              for event in report.audit_events[:3]]
    return "\n".join(lines)


def speedup_interval(original: Sequence[float], candidate: Sequence[float],
                     confidence: float = 0.95, seed: int = 0,
                     resamples: int = RESAMPLES) -> tuple[float, float, float]:
    """Point estimate and expanded-percentile bootstrap interval of the paired speedup.

    scipy is imported on the first call, not at the top: ``scipy.stats`` costs about
    0.4 s and 80 MiB of memory to load (measured here), which only a process that
    judges a candidate should pay, not everything that imports the cycle.
    """
    import numpy as np
    from scipy import stats

    logs = np.log(np.asarray(original, dtype=float) / np.asarray(candidate, dtype=float))
    point = math.exp(float(stats.trim_mean(logs, TRIM)))
    if len(logs) < 2:
        return point, point, point
    interval = stats.bootstrap(
        (logs,), _trimmed_mean, n_resamples=resamples, method="percentile",
        confidence_level=expanded_level(confidence, len(logs)),
        rng=np.random.default_rng(seed), vectorized=True,
    ).confidence_interval
    return point, math.exp(float(interval.low)), math.exp(float(interval.high))


def _trimmed_mean(values: Any, axis: int) -> Any:
    from scipy import stats

    return stats.trim_mean(values, TRIM, axis=axis)


def expanded_level(confidence: float, n: int) -> float:
    """The confidence level to ask the bootstrap for, widened for ``n`` pairs (Hesterberg 2015).

    The tail (1 - confidence) / 2 becomes Phi(-sqrt(n / (n - 1)) * t[1 - tail, n - 1]):
    the factor and Student's t in place of the normal quantile undo the bootstrap's
    plug-in variance (divisor n) and its normal-like tails, which make the plain
    interval too narrow for the 10-20 pairs a shadow run affords.
    """
    from scipy import stats

    if n < 2:
        return confidence
    tail = (1 - confidence) / 2
    widened = stats.norm.cdf(-math.sqrt(n / (n - 1)) * stats.t.ppf(1 - tail, n - 1))
    return 1 - 2 * float(widened)
