"""Tests for daemon.progress: the stage of the cycle in flight, from the events."""

from __future__ import annotations

from daemon import events as ev
from daemon.events import CycleOutcome
from daemon.progress import CycleProgress
from tests.clock import FakeClock

TARGET = "app.pricing:total"


def test_the_stage_follows_the_events_and_is_said_on_each_change() -> None:
    """Recording, proposing, judging, rolling out: each is said once, with the cycle's number;
    the snapshot gives the seconds in the cycle and in the stage, and none after the end."""
    clock = FakeClock(100.0)
    said: list[str] = []
    progress = CycleProgress(said.append, clock)
    assert progress.snapshot() is None
    progress.on_event(ev.CycleStarted(TARGET, 0.5))
    clock.now += 4.0
    progress.on_event(ev.CorpusRecorded(TARGET, 16))
    clock.now += 1.0
    progress.on_event(ev.CandidateProposed(TARGET, "ab" * 32, "rules:dedupe", "p"))
    clock.now += 2.5
    assert progress.snapshot() == {"target": TARGET,
                                   "stage": f"judging rules:dedupe {'ab' * 6} in the shadow",
                                   "seconds": 7.5, "stage_seconds": 2.5}
    progress.on_event(ev.RolloutStarted(TARGET, "cd" * 32))
    progress.on_event(ev.CycleFinished(TARGET, CycleOutcome.SWAPPED, 9.0, 1))
    assert progress.snapshot() is None
    assert said == [f"cycle 1: {TARGET}: recording live calls",
                    f"cycle 1: {TARGET}: proposing (16 calls recorded)",
                    f"cycle 1: {TARGET}: judging rules:dedupe {'ab' * 6} in the shadow",
                    f"cycle 1: {TARGET}: rolling out {'cd' * 6}: baseline, swap, canary"]
    progress.on_event(ev.CycleStarted(TARGET, 0.4))
    assert said[-1] == f"cycle 2: {TARGET}: recording live calls"
