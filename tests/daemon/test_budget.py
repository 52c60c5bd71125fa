"""Synthesis budgets: the cycles-per-hour window and the cool-down, on an injected clock."""

from __future__ import annotations

import math

from daemon.budget import HOUR, CycleWindow, cooldown_until, cooling_down, cycle_halt


def test_cycles_start_freely_below_the_budget() -> None:
    """With fewer starts in the last hour than the budget, a cycle may start."""
    assert cycle_halt([], 0.0, 3) is None
    assert cycle_halt([10.0, 20.0], 30.0, 3) is None


def test_the_budget_halts_once_the_hour_holds_that_many_cycles() -> None:
    """The Nth start within an hour exhausts a budget of N, naming it and when it frees up."""
    halt = cycle_halt([100.0, 200.0, 300.0], 400.0, 3)
    assert halt is not None
    assert halt.until == 100.0 + HOUR
    assert "cycles_per_hour (3)" in halt.reason and halt.reason.startswith("budget:")


def test_the_window_slides() -> None:
    """A start older than an hour no longer counts: the next cycle may start when it leaves."""
    starts = [100.0, 200.0, 300.0]
    assert cycle_halt(starts, 100.0 + HOUR - 0.001, 3) is not None
    assert cycle_halt(starts, 100.0 + HOUR, 3) is None


def test_lowering_the_budget_waits_for_enough_starts_to_leave() -> None:
    """Five starts against a new budget of 2: synthesis resumes when the fourth-newest leaves."""
    starts = [10.0, 20.0, 30.0, 40.0, 50.0]
    halt = cycle_halt(starts, 60.0, 2)
    assert halt is not None and halt.until == 40.0 + HOUR
    assert cycle_halt(starts, 40.0 + HOUR, 2) is None


def test_zero_cycles_per_hour_halts_synthesis_for_good() -> None:
    """A budget of 0 halts synthesis, and waiting does not lift it."""
    halt = cycle_halt([], 1e9, 0)
    assert halt is not None and halt.until == math.inf
    assert "is 0" in halt.reason


def test_starts_in_the_future_of_the_clock_reading_do_not_count() -> None:
    """Only starts up to ``now`` are in the window (a clock read late never double counts)."""
    assert cycle_halt([50.0, 60.0], 40.0, 1) is None


def test_cycle_window_records_and_forgets_on_the_injected_clock() -> None:
    """The window keeps start times, halts at the budget and forgets starts older than it."""
    clock = [0.0]
    window = CycleWindow(window=60.0)
    for _ in range(2):
        assert window.halt(clock[0], 2) is None
        window.record(clock[0])
        clock[0] += 10.0
    halt = window.halt(clock[0], 2)
    assert halt is not None and halt.until == 60.0
    clock[0] = 60.0
    assert window.halt(clock[0], 2) is None
    assert window.halt(clock[0], 3) is None


def test_cool_down_uses_the_policy_seconds() -> None:
    """A target rejected at t may be picked again exactly cooldown_seconds later, not before."""
    until = cooldown_until(100.0, 300.0)
    assert until == 400.0
    assert cooling_down(until, 399.9)
    assert not cooling_down(until, 400.0)


def test_a_target_never_rejected_is_not_cooling_down() -> None:
    """Without a recorded rejection there is nothing to wait for; a zero cool-down waits not."""
    assert not cooling_down(None, 0.0)
    assert not cooling_down(cooldown_until(5.0, 0.0), 5.0)
