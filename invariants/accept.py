"""Acceptance: a shadow report and the policy's minimum speedup in, a verdict out.

Pure. A candidate is accepted only when the shadow found nothing wrong (status
``ok``, no mismatch), replayed enough calls, and the *lower* bound of a
confidence interval for its speedup reaches the policy minimum.

The statistic. Each benchmark pair gives a ratio original/candidate (the pair ran
back to back, so drift in machine speed cancels). The speedup is the geometric
mean of the ratios, 10 % trimmed at each end against scheduling outliers: the
exponential of the trimmed mean of the log ratios. Its interval is a bootstrap
over the pairs (seeded, so a verdict is reproducible), percentile method, at
Hesterberg's *expanded* confidence level (:func:`expanded_level`): the plain
interval is too narrow for the 10-20 pairs a shadow run affords, which would let
an A/A comparison (the same code on both sides) pass a minimum of 1.0 more often
than the nominal 2.5 %.

Why percentile and not BCa. On the synthetic A/A timings of
``tests/invariants/test_accept.py`` (15 pairs, 10 % outlier pairs, 6000
trials) the expanded percentile interval passed a minimum of 1.0 in 1.9 % of
trials and 1.05 in 0.02 %; BCa at the same expanded level in 3.4 % and 0.2 %,
plain BCa in 4.6 % (2000 trials). BCa's acceleration is a jackknife estimate,
and the jackknife is unreliable for a trimmed mean, which moves in jumps as a
value enters or leaves the trim. Percentile intervals also stay defined when
every pair has the same ratio, where BCa's are not.

Why hand-written, and not ``scipy.stats``. This module runs inside the
long-running daemon. Importing ``scipy.stats`` there was measured at +74 MiB
RSS (46 MiB of it private), +0.5 s on first use and 2 extra native (OpenBLAS)
threads; on top of the daemon's ~60 MB RSS overhead that is well past its
80 MB budget. What is needed here is small: a trimmed mean, a seeded percentile
bootstrap, Student's t quantile and the normal distribution function
(``statistics.NormalDist``). So the daemon imports neither scipy nor numpy, not
even lazily. The tests check each piece against ``scipy.stats`` (a test and
benchmark dependency only), and that neither importing this module nor reaching
a verdict loads scipy or numpy.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from invariants.report import ShadowReport
from invariants.verdict import Rejected, Stage

__all__ = ["Accepted", "Rejected", "decide", "expanded_level", "settled", "speedup_interval",
           "student_t_quantile", "trimmed_mean"]

RESAMPLES = 2000
MIN_PAIRS = 5
EARLY_MARGIN = 1.5  # how far past the minimum an interval must lie to stop timing early
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


# Mismatch kinds with a reason of their own: a candidate keeping state between calls, and
# an input (found by the symbolic diff or the search) on which the two codes differ.
_KIND_REASONS = {"stateful": "stateful", "symbolic": "counterexample", "found": "counterexample"}


def _shadow_reason(report: ShadowReport) -> str:
    if report.status == "mismatch" and report.mismatches:
        return _KIND_REASONS.get(report.mismatches[0].kind, report.status)
    return report.status


def decide(report: ShadowReport, min_speedup: float, confidence: float = 0.95,
           min_calls: int = 1, seed: int = 0) -> Accepted | Rejected:
    """Accept ``report``'s candidate, or say at which stage and why not."""
    if report.status != "ok":
        return Rejected(Stage.SHADOW, _shadow_reason(report), _shadow_detail(report))
    if report.mismatches:
        return Rejected(Stage.SHADOW, "mismatch", _shadow_detail(report))
    if report.calls < min_calls:
        return Rejected(Stage.ACCEPT, "too_few_calls",
                        f"{report.calls} calls replayed; the policy asks for {min_calls}")
    pairs = _usable(report.original_times, report.candidate_times)
    if len(pairs) < MIN_PAIRS:
        return Rejected(Stage.ACCEPT, "too_few_samples",
                        f"{len(pairs)} usable benchmark pairs; at least {MIN_PAIRS} are needed")
    point, low, high = speedup_interval([o for o, _ in pairs], [c for _, c in pairs],
                                        confidence, seed)
    if low >= min_speedup:
        return Accepted(point, low, high, len(pairs), report.calls, confidence)
    return Rejected(Stage.ACCEPT, "speedup_below_minimum",
                    f"speedup {point:.3f} ({confidence:.0%} interval {low:.3f}-{high:.3f}, "
                    f"{len(pairs)} pairs, {report.calls} calls); the lower bound must reach "
                    f"{min_speedup:g}")


def settled(original: Sequence[float], candidate: Sequence[float], min_speedup: float,
            confidence: float, looks: int, seed: int = 0) -> bool:
    """Whether the pairs timed so far already decide the verdict, so timing may stop.

    The benchmark looks after each pair from the :data:`MIN_PAIRS`-th on, up to
    ``looks`` times. It stops when the interval at a confidence level corrected
    for those looks (Bonferroni: the tail ``1 - confidence`` shared among them)
    lies wholly on one side of ``min_speedup`` and :data:`EARLY_MARGIN` times
    away from it. The interval :func:`decide` computes later, over the same
    pairs with the same seed at the plain level, sits inside the corrected one,
    so the verdict is the one the early stop saw.

    Why the margin. With five to ten pairs the bootstrap interval is too
    narrow whatever its nominal level (the lowest resampled mean is about the
    lowest ratio), so "every pair so far above the minimum" would stop an A/A
    comparison early and accept it: on synthetic A/A timings a minimum of 1.0
    was passed in 6 % of runs against 2 % without looks. Only a case far from
    the line stops early: the slow original a rule makes 30 times faster, the
    candidate twice as slow. A close call runs all its repeats.
    """
    pairs = _usable(original, candidate)
    if len(pairs) < MIN_PAIRS:
        return False
    strict = 1 - (1 - confidence) / max(1, looks)
    _, low, high = speedup_interval([o for o, _ in pairs], [c for _, c in pairs], strict, seed)
    return low >= min_speedup * EARLY_MARGIN or high * EARLY_MARGIN <= min_speedup


def _usable(original: Sequence[float], candidate: Sequence[float]) -> list[tuple[float, float]]:
    """The pairs with two positive, finite times (a broken clock reading is no evidence)."""
    return [(o, c) for o, c in zip(original, candidate, strict=False)
            if o > 0 and c > 0 and math.isfinite(o) and math.isfinite(c)]


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

    Percentile method: the bounds are order statistics of ``resamples`` trimmed
    means of resampled log ratios, drawn from ``random.Random(seed)``, so the same
    samples and seed give the same interval on every run and platform.
    """
    logs = [math.log(o / c) for o, c in zip(original, candidate, strict=True)]
    n = len(logs)
    point = math.exp(trimmed_mean(logs)) if logs else math.nan
    if n < 2:
        return point, point, point
    rng = random.Random(seed)
    means = sorted(trimmed_mean(rng.choices(logs, k=n)) for _ in range(resamples))
    tail = _expanded_tail((1 - confidence) / 2, n)
    low_index = min(resamples - 1, int(tail * resamples))
    high_index = max(0, min(resamples - 1, math.ceil((1 - tail) * resamples) - 1))
    return point, math.exp(means[low_index]), math.exp(means[high_index])


def trimmed_mean(values: Sequence[float]) -> float:
    """Mean of ``values`` without the ``int(TRIM * n)`` smallest and largest (as scipy's)."""
    ordered = sorted(values)
    cut = int(len(ordered) * TRIM)
    return statistics.fmean(ordered[cut:len(ordered) - cut] or ordered)


def expanded_level(confidence: float, n: int) -> float:
    """The confidence level to ask the bootstrap for, widened for ``n`` pairs (Hesterberg 2015).

    The tail (1 - confidence) / 2 becomes Phi(-sqrt(n / (n - 1)) * t[1 - tail, n - 1]):
    the factor and Student's t in place of the normal quantile undo the bootstrap's
    plug-in variance (divisor n) and its normal-like tails, which make the plain
    interval too narrow for the 10-20 pairs a shadow run affords.
    """
    return 1 - 2 * _expanded_tail((1 - confidence) / 2, n)


def _expanded_tail(alpha: float, n: int) -> float:
    # The interval works on the tail, not the level, so that the percentile
    # indices do not round through 1 - 2 * tail and back.
    if n < 2:
        return alpha
    return _NORMAL.cdf(-math.sqrt(n / (n - 1)) * student_t_quantile(1 - alpha, n - 1))


def student_t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom, to about 1e-11.

    The Cornish-Fisher expansion alone is 0.25 % low at p = 0.975 with 4 degrees of
    freedom (the fewest :func:`decide` sees) and 1.2 % at 0.995, worse below; so it
    only starts Newton's method on the exact distribution function.
    """
    if not 0 < p < 1 or df < 1:
        raise ValueError(f"need 0 < p < 1 and df >= 1, got p={p}, df={df}")
    if p < 0.5:
        return -student_t_quantile(1 - p, df)
    z = _NORMAL.inv_cdf(p)
    t = (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
         + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))
    log_density_scale = (math.lgamma((df + 1) / 2) - math.lgamma(df / 2)
                         - 0.5 * math.log(df * math.pi))
    for step_number in range(100):
        density = math.exp(log_density_scale - (df + 1) / 2 * math.log1p(t * t / df))
        step = (p - _student_t_cdf(t, df)) / density
        # Above the median the CDF is concave, so after the first step the iterates
        # only rise to the root: a step that is not clearly upward is converged or
        # is the rounding noise of p - CDF, and either way the end.
        if step_number and step <= 1e-13 * t:
            break
        t += step
    return t


def _student_t_cdf(t: float, df: int) -> float:
    """Student's t distribution function for integer ``df`` and ``t >= 0``, by the finite
    series of Abramowitz and Stegun 26.7.3 (odd df) and 26.7.4 (even df)."""
    cos2 = df / (df + t * t)
    sin = t / math.sqrt(df + t * t)
    if df % 2:
        term = series = math.sqrt(cos2)
        for k in range(1, (df - 1) // 2):
            term *= cos2 * (2 * k) / (2 * k + 1)
            series += term
        theta = math.atan(t / math.sqrt(df))
        inside = (2 / math.pi) * (theta + (sin * series if df > 1 else 0.0))
    else:
        term = series = 1.0
        for k in range(1, df // 2):
            term *= cos2 * (2 * k - 1) / (2 * k)
            series += term
        inside = sin * series
    return (1 + inside) / 2
