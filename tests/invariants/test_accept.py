"""Acceptance statistics: noise is not a speedup, a real speedup is, and failures say where."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from invariants.accept import (
    TRIM,
    Accepted,
    Rejected,
    decide,
    expanded_level,
    settled,
    speedup_interval,
    student_t_quantile,
    trimmed_mean,
)
from invariants.report import AuditEvent, Mismatch, ShadowReport

REPO = Path(__file__).resolve().parents[2]


def synthetic(rng: random.Random, pairs: int, true_speedup: float, noise: float = 0.05,
              outliers: float = 0.0) -> ShadowReport:
    """Timings as a benchmark produces them: shared drift per pair, lognormal noise."""
    original, candidate = [], []
    for _ in range(pairs):
        drift = rng.gauss(0, 0.1)
        o = 1e-4 * math.exp(drift + rng.gauss(0, noise))
        c = 1e-4 * math.exp(drift + rng.gauss(0, noise)) / true_speedup
        if rng.random() < outliers:
            o *= 3
        if rng.random() < outliers:
            c *= 3
        original.append(o)
        candidate.append(c)
    return ShadowReport(status="ok", calls=20, original_times=tuple(original),
                        candidate_times=tuple(candidate), loops=100, hash_seeds_checked=(0, 1))


def acceptance_rate(min_speedup: float, trials: int, **shape: float) -> float:
    rng = random.Random(20240601)
    accepted = 0
    for trial in range(trials):
        report = synthetic(rng, 15, 1.0, **shape)
        accepted += isinstance(decide(report, min_speedup, seed=trial), Accepted)
    return accepted / trials


def test_a_a_is_rarely_accepted_at_a_minimum_of_one() -> None:
    """The same code on both sides passes min_speedup 1.0 in at most ~5% of trials."""
    assert acceptance_rate(1.0, 150) <= 0.05
    assert acceptance_rate(1.0, 100, outliers=0.1) <= 0.05


def test_a_a_is_almost_never_accepted_at_five_percent() -> None:
    """The same code on both sides essentially never passes min_speedup 1.05."""
    assert acceptance_rate(1.05, 100) <= 0.01


def sequential(rng: random.Random, true_speedup: float, min_speedup: float,
               repeats: int = 15) -> tuple[ShadowReport, bool]:
    """The shadow's benchmark with its early stop: pairs until ``settled``, then the report."""
    looks = repeats - 4
    report = synthetic(rng, repeats, true_speedup)
    for n in range(1, repeats + 1):
        original, candidate = report.original_times[:n], report.candidate_times[:n]
        if settled(original, candidate, min_speedup, 0.95, looks):
            return ShadowReport(status="ok", calls=20, original_times=original,
                                candidate_times=candidate, loops=100,
                                hash_seeds_checked=(0, 1)), True
    return report, False


def test_stopping_early_keeps_a_a_rarely_accepted() -> None:
    """Looking after every pair from the fifth on does not let the same code through more often
    (without the margin, 6 of these 100 were accepted at a minimum of 1.0, against 2 with
    all fifteen pairs)."""
    rng = random.Random(7)
    with_looks = without = 0
    for _ in range(100):
        state = rng.getstate()
        with_looks += isinstance(decide(sequential(rng, 1.0, 1.0)[0], 1.0), Accepted)
        rng.setstate(state)
        without += isinstance(decide(synthetic(rng, 15, 1.0), 1.0), Accepted)
    assert with_looks <= without <= 5


def test_a_clear_case_stops_at_five_pairs_with_the_verdict_it_saw() -> None:
    """A threefold speedup or a twofold slowdown is settled at five pairs; the verdict over
    those pairs is the one the stop saw. A close call runs all its repeats."""
    rng = random.Random(11)
    fast, stopped = sequential(rng, 3.0, 1.05)
    assert stopped and len(fast.original_times) == 5
    assert isinstance(decide(fast, 1.05), Accepted)
    slow, stopped = sequential(rng, 0.5, 1.05)
    assert stopped and len(slow.original_times) == 5
    assert decide(slow, 1.05).reason == "speedup_below_minimum"
    close, stopped = sequential(rng, 1.06, 1.05)
    assert not stopped and len(close.original_times) == 15


def test_an_early_stop_never_contradicts_the_verdict() -> None:
    """Whenever timing stops early, :func:`decide` on the same pairs agrees with the stop."""
    rng = random.Random(3)
    for trial in range(40):
        true_speedup = rng.choice((0.9, 1.0, 1.1, 1.3, 2.0))
        report, stopped = sequential(rng, true_speedup, 1.05)
        if stopped:
            low = speedup_interval(report.original_times, report.candidate_times, 0.95)[1]
            accepted = isinstance(decide(report, 1.05), Accepted)
            assert accepted == (low >= 1.05), trial


def test_a_clear_twofold_speedup_is_accepted_with_its_interval() -> None:
    """A 2x faster candidate is accepted, the interval brackets 2 and carries sample sizes."""
    verdict = decide(synthetic(random.Random(7), 15, 2.0), 1.05)
    assert isinstance(verdict, Accepted)
    assert verdict.ci_low <= 2.0 <= verdict.ci_high
    assert 1.8 < verdict.speedup < 2.2 and verdict.ci_low > 1.7
    assert verdict.samples == 15 and verdict.calls == 20


def test_a_slower_candidate_is_rejected_by_the_statistics() -> None:
    """A candidate 10% slower is rejected at stage accept with the measured interval."""
    verdict = decide(synthetic(random.Random(3), 15, 0.9), 1.05)
    assert isinstance(verdict, Rejected)
    assert (verdict.stage, verdict.reason) == ("accept", "speedup_below_minimum")
    assert "interval" in verdict.detail and "15 pairs" in verdict.detail


def test_a_mismatch_is_rejected_at_the_shadow_stage_with_evidence() -> None:
    """A mismatch report is rejected at stage shadow, whatever its timings say."""
    report = ShadowReport(status="mismatch", reason="1 of 3 calls differ", calls=3,
                          mismatches=(Mismatch(1, "([3, 1],)", "[1, 3]", "[3, 1]", "value"),),
                          original_times=(1.0,) * 10, candidate_times=(0.1,) * 10)
    verdict = decide(report, 1.05)
    assert isinstance(verdict, Rejected)
    assert (verdict.stage, verdict.reason) == ("shadow", "mismatch")
    assert "expected [1, 3], got [3, 1]" in verdict.detail


def test_error_and_forbidden_statuses_are_rejected_at_the_shadow_stage() -> None:
    """Every non-ok status is a shadow-stage rejection labelled with the status."""
    for status in ("error", "timeout", "crashed", "limit", "forbidden"):
        report = ShadowReport(status=status, reason=f"it was {status}",
                              audit_events=(AuditEvent("os.system", "no", "candidate"),))
        verdict = decide(report, 1.0)
        assert isinstance(verdict, Rejected)
        assert (verdict.stage, verdict.reason) == ("shadow", status)
        assert f"it was {status}" in verdict.detail and "os.system" in verdict.detail


def test_too_few_calls_or_samples_are_rejected() -> None:
    """A report with fewer calls than the policy asks, or too few pairs, is not accepted."""
    report = synthetic(random.Random(1), 15, 3.0)
    assert decide(report, 1.05, min_calls=50) == Rejected(
        "accept", "too_few_calls", "20 calls replayed; the policy asks for 50")
    short = synthetic(random.Random(1), 3, 3.0)
    verdict = decide(short, 1.05)
    assert isinstance(verdict, Rejected) and verdict.reason == "too_few_samples"


def test_the_verdict_is_reproducible_for_a_seed() -> None:
    """The bootstrap is seeded: the same report and seed give the same interval."""
    report = synthetic(random.Random(5), 15, 1.3)
    assert decide(report, 1.05, seed=4) == decide(report, 1.05, seed=4)
    point, low, high = speedup_interval(report.original_times, report.candidate_times)
    assert low <= point <= high


def test_all_equal_ratios_give_an_interval_of_that_ratio() -> None:
    """Pairs that all have the same ratio (BCa is undefined) give that ratio as point and bounds."""
    point, low, high = speedup_interval((2e-4,) * 15, (1e-4,) * 15)
    assert math.isclose(point, 2.0) and math.isclose(low, 2.0) and math.isclose(high, 2.0)
    verdict = decide(ShadowReport(status="ok", calls=20, original_times=(2e-4,) * 15,
                                  candidate_times=(1e-4,) * 15), 1.05)
    assert isinstance(verdict, Accepted) and math.isclose(verdict.ci_low, 2.0)


def test_a_degenerate_bca_falls_back_to_a_finite_interval() -> None:
    """One odd pair among equal ones (where BCa would be undefined) still gives finite bounds."""
    original = (1e-4,) * 14 + (3e-4,)
    point, low, high = speedup_interval(original, (1e-4,) * 15)
    assert all(math.isfinite(x) for x in (point, low, high))
    assert low <= point <= high and low >= 1.0


def test_the_interval_is_widened_most_for_few_pairs() -> None:
    """The bootstrap is asked for more than the nominal confidence, less so as pairs grow."""
    levels = [expanded_level(0.95, n) for n in (5, 15, 100, 10_000)]
    assert levels == sorted(levels, reverse=True)
    assert 0.95 < levels[-1] < 0.9502 and levels[0] > 0.98


# The daemon's statistics are hand-written (scipy costs it too much memory); these
# check them against scipy.stats, which is a test dependency only.

T_LEVELS = (0.5001, 0.6, 0.75, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999, 0.9999)
T_DFS = (*range(1, 31), 49, 99, 999, 9999)


def test_the_t_quantile_matches_scipy() -> None:
    """student_t_quantile agrees with scipy.stats.t.ppf to 1e-10 relative on both tails."""
    # Newton on the exact series CDF lands within ~5e-12 relative of scipy (worst:
    # df 9999 at 0.9999); just above the median, where the quantile nears 0, the
    # difference p - CDF cancels, hence the 1e-12 absolute floor (seen: 4e-13).
    for df in T_DFS:
        for p in T_LEVELS:
            for q in (p, 1 - p):
                assert math.isclose(student_t_quantile(q, df), stats.t.ppf(q, df),
                                    rel_tol=1e-10, abs_tol=1e-12), (q, df)
    assert student_t_quantile(0.5, 7) == 0.0


def test_the_trimmed_mean_matches_scipy() -> None:
    """trimmed_mean cuts what scipy.stats.trim_mean cuts, so the means agree to 1e-12."""
    # Same subset, different summation (fsum against numpy's pairwise sum).
    rng = random.Random(99)
    for n in range(1, 41):
        values = [rng.lognormvariate(0, 1) for _ in range(n)]
        values += values[: n // 4]  # ties at the cut
        assert math.isclose(trimmed_mean(values), stats.trim_mean(values, TRIM),
                            rel_tol=1e-12), n


def test_the_expanded_level_matches_its_scipy_formulation() -> None:
    """expanded_level equals 1 - 2 Phi(-sqrt(n/(n-1)) t[1-tail, n-1]) computed by scipy to 1e-12."""
    for confidence in (0.8, 0.9, 0.95, 0.99):
        tail = (1 - confidence) / 2
        for n in (*range(2, 41), 100, 1000, 10_000):
            reference = 1 - 2 * stats.norm.cdf(
                -math.sqrt(n / (n - 1)) * stats.t.ppf(1 - tail, n - 1))
            assert math.isclose(expanded_level(confidence, n), reference,
                                rel_tol=0, abs_tol=1e-12), (confidence, n)
        assert expanded_level(confidence, 1) == confidence


def _scipy_trimmed_mean(values: Any, axis: int) -> Any:
    return stats.trim_mean(values, TRIM, axis=axis)


def test_the_bootstrap_interval_matches_scipy_percentile() -> None:
    """speedup_interval's bounds are scipy's percentile bootstrap bounds at the expanded level."""
    # Resampling noise: with 20 000 resamples each, a bound's standard deviation
    # across seeds is at most ~1.1 % of the interval's width on these shapes, so the
    # two implementations differ by ~1.5 % of it (one sigma). 8 % is ~5 sigma, and
    # also covers the jumps a trimmed mean makes when an outlier pair enters a
    # resample (worst seen over 60 random 15-20 pair samples: 4.4 %).
    for seed, pairs, speedup, outliers in ((11, 15, 1.0, 0.0), (12, 15, 1.3, 0.1),
                                           (13, 20, 0.9, 0.1)):
        report = synthetic(random.Random(seed), pairs, speedup, outliers=outliers)
        point, low, high = speedup_interval(report.original_times, report.candidate_times,
                                            seed=seed, resamples=20_000)
        logs = np.log(np.asarray(report.original_times) / np.asarray(report.candidate_times))
        reference = stats.bootstrap(
            (logs,), _scipy_trimmed_mean, n_resamples=20_000, method="percentile",
            confidence_level=expanded_level(0.95, pairs), vectorized=True,
            rng=np.random.default_rng(seed)).confidence_interval
        width = reference.high - reference.low
        assert abs(math.log(low) - reference.low) <= 0.08 * width, seed
        assert abs(math.log(high) - reference.high) <= 0.08 * width, seed
        assert math.isclose(math.log(point), stats.trim_mean(logs, TRIM), rel_tol=1e-12)


LOADED = "print('scipy' in sys.modules, 'numpy' in sys.modules)"
VERDICT = ("from invariants.report import ShadowReport; "
           "invariants.accept.decide(ShadowReport(status='ok', calls=20, "
           "original_times=(2e-4, 3e-4) * 8, candidate_times=(1e-4,) * 16), 1.05)")


def test_acceptance_loads_neither_scipy_nor_numpy() -> None:
    """Importing invariants.accept and reaching a verdict loads neither scipy nor numpy."""
    # The verdict too: a lazy import inside the statistics would pass an import-only check.
    proc = subprocess.run(
        [sys.executable, "-c", f"import invariants.accept, sys; {LOADED}; {VERDICT}; {LOADED}"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.split() == ["False", "False"] * 2, proc.stderr
