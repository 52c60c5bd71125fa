"""Crash consistency of the real daemon: killed at a swap step or at random, it restarts whole.

Each test runs `selfmod run` on the demo, lets it die (at a named crash point
through ``SELFMOD_CRASH_AT``, or by SIGKILL at a random moment), restarts it
without the variable and checks what the issue asks: the state is the old one
or the new one, the audit chain verifies (a torn tail, repaired, is a crash and
fine), no temporary file is left, and the patches the restart applies are
exactly the active set in ``state.json``.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from snapshots.crash import CRASH_ENV, CRASH_EXIT_STATUS, DAEMON_POINTS
from tests.daemon.live import SELFMOD, LiveDaemon, cli, quick_config, seed_version

SCOPE = ["demo.logstats:dedupe_sessions", "demo.logstats:unique_visitors"]

# The state a crash at each point must leave, relative to the version being swapped in
# (swap.*) or rolled back (rollback.*): writing state.json is the commit point.
EXPECTED = {
    "swap.before_install": "old",
    "swap.after_install_before_state": "old",
    "swap.after_state": "new",
    "rollback.after_state": "new",
    "rollback.after_uninstall": "new",
}


class Offspring:
    """Every process a daemon starts, noted while it runs, so that none outlives its crash.

    A daemon killed at once cannot stop its shadow runs; they would finish on their
    own, but a test cleans up every process it caused.
    """

    def __init__(self, pid: int) -> None:
        self._root = psutil.Process(pid)
        self._seen: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            try:
                for child in self._root.children(recursive=True):
                    self._seen.setdefault(child.pid, child)
            except psutil.NoSuchProcess:
                return

    def reap(self) -> None:
        self._stop.set()
        self._thread.join(5)
        alive = [p for p in self._seen.values() if p.is_running()]
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(alive, timeout=10)


def run(state: Path, crash_at: str = "") -> LiveDaemon:
    """`selfmod run` on the demo; ``crash_at`` arms a crash point ("" arms none)."""
    return LiveDaemon(["--config", str(quick_config(state.parent)), "--state-dir", str(state),
                       "--metrics-port", "0", "--scope", *SCOPE],
                      state.parent, env={CRASH_ENV: crash_at})


def temp_files(state: Path) -> list[Path]:
    return [p for p in state.rglob("*") if p.name.endswith(".tmp")]


def load_state(state: Path) -> dict[str, Any]:
    """state.json as written; before the first write there is none, and nothing is active."""
    path = state / "state.json"
    if not path.exists():
        return {"active": {}, "versions": {}}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def restart_and_check(state: Path) -> dict[str, Any]:
    """Restart without a crash point; check restore, the chain and temp files; return the state."""
    expected = load_state(state)
    again = run(state)
    try:
        again.wait_for("metrics_listening", 120)  # the restore is done before the endpoints
        restored = {(e["target"], e["version"]) for e in again.events("restored")}
        assert again.events("stale") == [], again.tail()
        assert restored == set(expected["active"].items()), again.tail()
        again.proc.send_signal(signal.SIGTERM)
        assert again.finish(60) == 0, again.tail()
    finally:
        again.kill()
    assert temp_files(state) == []
    verify = cli("audit", "verify", "--state-dir", str(state), cwd=state.parent)
    assert verify["ok"] and verify["records"] > 0, verify
    return expected


def test_every_daemon_crash_point_has_an_expected_outcome() -> None:
    """Each of the daemon's crash points is in the table, so a new one cannot go untested."""
    assert set(EXPECTED) == set(DAEMON_POINTS)


@pytest.mark.slow
@pytest.mark.parametrize("point", DAEMON_POINTS)
def test_a_daemon_killed_at_a_swap_step_restarts_on_the_old_or_new_state(tmp_path, point):
    """Killed at the point, the daemon leaves the old or new state and restarts exactly on it."""
    state = tmp_path / "state"
    daemon = run(state, crash_at=point)
    offspring = Offspring(daemon.proc.pid)
    try:
        if point.startswith("swap."):
            # of several accepted candidates the fastest goes live: follow that one
            started = daemon.wait_for("rollout_started", 240)
            target, version = started["target"], started["version"]
        else:
            passed = daemon.wait_for("canary_passed", 240)
            target, version = passed["target"], passed["version"]
            answer = subprocess.run([*SELFMOD, "rollback", version[:12], "--state-dir",
                                     str(state)], cwd=tmp_path, capture_output=True, timeout=60)
            assert answer.returncode != 0  # the daemon died before it could answer
        code = daemon.finish(120)
    finally:
        daemon.kill()
        offspring.reap()
    assert code == CRASH_EXIT_STATUS, daemon.tail()
    assert temp_files(state) == []  # every write before a swap step had completed

    on_disk = load_state(state)
    status = on_disk["versions"][version]["status"]
    if point.startswith("swap."):
        new = on_disk["active"].get(target) == version and status == "active"
        old = version not in on_disk["active"].values() and status != "active"
    else:
        new = target not in on_disk["active"] and status == "rolled_back"
        old = on_disk["active"].get(target) == version and status == "active"
    assert (old, new) == (EXPECTED[point] == "old", EXPECTED[point] == "new"), on_disk
    restart_and_check(state)


@pytest.mark.slow
@pytest.mark.parametrize("point", [p for p in DAEMON_POINTS if p.startswith("rollback.")])
def test_a_crashed_rollback_over_an_earlier_version_restarts_on_that_version(tmp_path, point):
    """Killed while rolling back a version that replaced another, it restarts on the other."""
    state, target = tmp_path / "state", SCOPE[0]
    earlier = seed_version(state, target, "accepted first")
    active = seed_version(state, target, "accepted second, replacing the first")
    config = tmp_path / "selfmod.yaml"
    config.write_text("version: 1\ncycle:\n  warmup_seconds: 86400\n")  # no cycle starts
    daemon = LiveDaemon(["--config", str(config), "--state-dir", str(state), "--metrics-port",
                         "0", "--scope", *SCOPE], tmp_path, env={CRASH_ENV: point})
    try:
        daemon.wait_for("metrics_listening", 120)
        answer = subprocess.run([*SELFMOD, "rollback", active[:12], "--state-dir", str(state)],
                                cwd=tmp_path, capture_output=True, timeout=60)
        assert answer.returncode != 0  # the daemon died before it could answer
        code = daemon.finish(60)
    finally:
        daemon.kill()
    assert code == CRASH_EXIT_STATUS, daemon.tail()
    on_disk = load_state(state)
    assert on_disk["active"] == {target: earlier}
    assert on_disk["versions"][active]["status"] == "rolled_back"
    assert on_disk["versions"][earlier]["status"] == "active"
    restart_and_check(state)


@pytest.mark.slow
def test_a_daemon_killed_at_a_random_moment_under_load_restarts_whole(tmp_path):
    """SIGKILL at a random moment of a busy cycle leaves a state the restart applies exactly."""
    state = tmp_path / "state"
    # from the first proposal on: its shadow run, baseline, swap, canary, the next cycle
    moment = random.Random().uniform(0.0, 20.0)
    daemon = run(state)
    offspring = Offspring(daemon.proc.pid)
    try:
        daemon.wait_for("proposed", 240)
        time.sleep(moment)
        assert daemon.proc.poll() is None, daemon.tail()
        daemon.proc.send_signal(signal.SIGKILL)
        code = daemon.finish(30)
    finally:
        daemon.kill()
        offspring.reap()
    assert code == -signal.SIGKILL, f"killed {moment:.1f} s after the first proposal"
    expected = restart_and_check(state)
    for target, version in expected["active"].items():
        assert expected["versions"][version]["status"] == "active"
        assert expected["versions"][version]["target"] == target
