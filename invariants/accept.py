"""Acceptance: a shadow report and the policy's minimum speedup in, a verdict out.

Pure. A candidate is accepted only when the shadow found nothing wrong (status
``ok``, no mismatch), replayed enough calls, and the *lower* bound of a
confidence interval for its speedup reaches the policy minimum.

The statistic. Each benchmark pair gives a ratio original/candidate (the pair ran
back to back, so drift in machine speed cancels). The speedup is the geometric
mean of the ratios, 10 % trimmed at each end against scheduling outliers: the
exponential of the trimmed mean of the log ratios. Its interval is a bootstrap
over the pairs (seeded, so a verdict is reproducible) with Hesterberg's
*expanded percentile* correction: the plain percentile bootstrap is too narrow
for the 10-20 pairs a shadow run affords, which would let an A/A comparison
(the same code on both sides) pass a minimum of 1.0 more often than the nominal
2.5 %; widening the percentiles by the Student-t factor brings it back (measured
on synthetic timings in ``tests/invariants/test_accept.py``).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from invariants.report import ShadowReport

RESAMPLES = 2000
MIN_PAIRS = 5
TRIM = 0.1
_NORMAL = statistics.NormalDist()


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
    """Point estimate and expanded-percentile bootstrap interval of the paired speedup."""
    logs = [math.log(o / c) for o, c in zip(original, candidate, strict=True)]
    n = len(logs)
    rng = random.Random(seed)
    means = sorted(_trimmed_mean(rng.choices(logs, k=n)) for _ in range(resamples))
    tail = _expanded_tail((1 - confidence) / 2, n)
    low_index = min(resamples - 1, int(tail * resamples))
    high_index = max(0, min(resamples - 1, math.ceil((1 - tail) * resamples) - 1))
    return (math.exp(_trimmed_mean(logs)), math.exp(means[low_index]),
            math.exp(means[high_index]))


def _trimmed_mean(values: list[float]) -> float:
    ordered = sorted(values)
    cut = int(len(ordered) * TRIM)
    return statistics.fmean(ordered[cut:len(ordered) - cut] or ordered)


def _expanded_tail(alpha: float, n: int) -> float:
    """Hesterberg (2015): use Phi(-sqrt(n/(n-1)) * t[1-alpha, n-1]) instead of alpha."""
    if n < 2:
        return alpha
    return _NORMAL.cdf(-math.sqrt(n / (n - 1)) * _student_t(1 - alpha, n - 1))


def _student_t(p: float, df: int) -> float:
    """Student-t quantile by the Cornish-Fisher expansion (3 decimals from df 4 on)."""
    z = _NORMAL.inv_cdf(p)
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))
