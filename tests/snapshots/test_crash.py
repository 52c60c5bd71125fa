"""Crash consistency: a writer killed at any named point or at random leaves old or new state."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snapshots import (
    CRASH_POINTS,
    Snapshots,
    State,
    StateStore,
    activate,
    crash_point,
    verify_file,
    with_version,
)
from snapshots.audit import REPAIRED_KIND, read_records
from snapshots.crash import CRASH_ENV, CRASH_EXIT_STATUS, STORAGE_POINTS

from .crash_writer import NEW, WRITER_CLOCK, transition
from .factories import BASE, TARGET, make_version

REPO = Path(__file__).resolve().parents[2]
OLD = make_version(created_at=1000.0)

# Which state a crash at each point must leave: the rename is the commit point.
EXPECTED = {
    "object.tmp_partial": "old",
    "object.tmp_written": "old",
    "object.renamed": "old",
    "audit.torn_write": "old",
    "audit.written": "old",
    "audit.synced": "old",
    "audit.repair_truncated": "old",
    "state.tmp_partial": "old",
    "state.tmp_written": "old",
    "state.renamed": "new",
    "state.dir_synced": "new",
}


def run_writer(state_dir: Path, mode: str, crash_at: str | None = None,
               ) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    return subprocess.Popen([sys.executable, "-m", "tests.snapshots.crash_writer",
                             str(state_dir), mode], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def seed(state_dir: Path) -> State:
    """A state directory with one active version, as a previous run would leave it."""
    with Snapshots(state_dir, clock=lambda: 1000.0) as snaps:
        transition(snaps, OLD)
        return snaps.state.load()


def temp_files(state_dir: Path) -> list[Path]:
    return [p for p in state_dir.rglob("*") if p.name.endswith(".tmp")]


def assert_recovers(state_dir: Path) -> State:
    """Reopen as the daemon would: no temp files, the chain intact, every active source good."""
    with Snapshots(state_dir) as snaps:
        assert temp_files(state_dir) == []
        result = snaps.audit.verify()
        assert (result.ok, result.torn_tail) == (True, False), result.problem
        state = snaps.state.load()
        plan = snaps.restore_plan(lambda target: BASE)
        assert [d.action for d in plan] == ["apply"] * len(state.active)
        return state


def test_every_crash_point_has_an_expected_outcome() -> None:
    """Each storage crash point is covered by the table below, so a new one cannot go untested."""
    assert set(EXPECTED) == set(STORAGE_POINTS)
    assert set(STORAGE_POINTS) <= set(CRASH_POINTS)


def test_crash_point_refuses_unknown_names() -> None:
    """A misspelt crash point raises instead of silently never firing."""
    with pytest.raises(ValueError, match="unknown crash point"):
        crash_point("state.renamd")


def test_writer_without_crash_reaches_the_new_state(tmp_path: Path) -> None:
    """With no crash point set, the writer exits cleanly and leaves the new state."""
    old = seed(tmp_path)
    writer = run_writer(tmp_path, "once")
    _, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err.decode()
    expected = activate(with_version(old, NEW), TARGET, NEW.id)
    assert StateStore(tmp_path).load().active == expected.active
    assert assert_recovers(tmp_path).versions == expected.versions


@pytest.mark.parametrize("point", STORAGE_POINTS)
def test_crash_at_each_point_leaves_old_or_new_state(tmp_path: Path, point: str) -> None:
    """Killed at the point, the writer leaves exactly the old or new state; recovery is clean."""
    old = seed(tmp_path)
    if point == "audit.repair_truncated":
        with open(tmp_path / "audit.log", "ab") as fh:
            fh.write(b'{"v":1,"seq":2,"ts":')
    writer = run_writer(tmp_path, "once", crash_at=point)
    _, err = writer.communicate(timeout=60)
    assert writer.returncode == CRASH_EXIT_STATUS, err.decode()

    new = activate(with_version(old, NEW), TARGET, NEW.id)
    on_disk = StateStore(tmp_path).load()
    if EXPECTED[point] == "old":
        assert on_disk == old
    else:
        assert on_disk.versions == new.versions
        assert on_disk.active == new.active
        assert on_disk.updated_at == WRITER_CLOCK
    before = verify_file(tmp_path / "audit.log")
    assert before.ok, before.problem

    assert assert_recovers(tmp_path) == on_disk
    if point == "audit.torn_write":
        assert before.torn_tail
        assert [r.kind for r in read_records(tmp_path / "audit.log")][-1] == REPAIRED_KIND


def test_kills_at_random_moments_under_load(tmp_path: Path) -> None:
    """SIGKILL at random moments during back-to-back writes never leaves a broken directory."""
    seed(tmp_path)
    rng = random.Random(5)
    for _ in range(3):
        writer = run_writer(tmp_path, "loop")
        time.sleep(rng.uniform(0.3, 0.6))
        writer.send_signal(signal.SIGKILL)
        _, err = writer.communicate(timeout=60)
        assert writer.returncode == -signal.SIGKILL, err.decode()
        before = verify_file(tmp_path / "audit.log")
        assert before.ok, before.problem
        state = assert_recovers(tmp_path)
        assert list(state.active) == [TARGET]
    assert len(StateStore(tmp_path).load().versions) > 3
