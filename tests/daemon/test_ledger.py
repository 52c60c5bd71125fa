"""The daemon's ledger: what activation and rollback write to state.json and the audit log."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.ledger import Ledger
from daemon.synthesis.base import Candidate
from invariants.targets import sha256_text
from snapshots import Snapshots, mark, verify_file
from snapshots.versions import VersionStatus
from tests.daemon.live import SELFMOD

TARGET = "tests.daemon.fixtures.canary_targets:checksum"
BASE = sha256_text("def checksum(values): ...\n")
ANOTHER = "def checksum(values):\n    return sum(values) + 7\n"
SOURCES = [f"def checksum(values):\n    return sum(values) + {n}\n" for n in range(3)]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Snapshots(tmp_path / "state") as snapshots:
        yield Ledger.writer(snapshots)


def _activate_in_turn(ledger: Ledger, sources: list[str]) -> list[str]:
    ids = []
    for source in sources:
        vid = ledger.propose(Candidate(TARGET, source, "rules:test", BASE), BASE)
        ledger.activate(TARGET, vid, {"speedup": 2.0})
        ids.append(vid)
    return ids


def test_activation_names_the_version_it_replaces(ledger: Ledger) -> None:
    """Each activation records what was active before it ("" for the original code)."""
    first, second = _activate_in_turn(ledger, SOURCES[:2])
    state = ledger.state.load()
    assert state.versions[first].evidence["replaces"] == ""
    assert state.versions[second].evidence["replaces"] == first
    assert state.versions[first].status is VersionStatus.SUPERSEDED
    assert state.active == {TARGET: second}


def test_roll_back_reinstates_the_named_version_once(ledger: Ledger) -> None:
    """A rollback makes the replaced version active again; repeating it changes nothing."""
    first, second = _activate_in_turn(ledger, SOURCES[:2])
    assert ledger.roll_back(TARGET, second, "canary_latency", reinstate=first)
    state = ledger.state.load()
    assert state.active == {TARGET: first}
    assert state.versions[second].status is VersionStatus.ROLLED_BACK
    assert state.versions[second].evidence["reason"] == "canary_latency"
    assert state.versions[first].evidence["reinstated_after"] == second
    assert not ledger.roll_back(TARGET, second, "operator", reinstate=first)
    assert ledger.state.load().active == {TARGET: first}
    assert ledger.roll_back(TARGET, first, "operator", reinstate="")
    assert ledger.state.load().active == {}


def _offline_rollback(state_dir: Path, version: str) -> dict[str, str]:
    done = subprocess.run([*SELFMOD, "rollback", version[:12], "--state-dir", str(state_dir),
                           "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_offline_rollback_falls_back_like_the_live_daemon(tmp_path: Path) -> None:
    """`selfmod rollback` with no daemon running reinstates the replaced version, audited."""
    state_dir = tmp_path / "state"
    with Snapshots(state_dir) as snapshots:
        first, second, third = _activate_in_turn(Ledger.writer(snapshots), SOURCES)
        # the middle one was rolled back while the third was active: it is not reinstated
        snapshots.state.update(lambda state: mark(state, second, VersionStatus.ROLLED_BACK))
    answer = _offline_rollback(state_dir, third)
    assert answer == {"rolled_back": third, "target": TARGET, "restored": "", "excluded": True}

    with Snapshots(state_dir) as snapshots:
        first2, second2 = _activate_in_turn(Ledger.writer(snapshots), [SOURCES[0], ANOTHER])
    assert first2 == first
    answer = _offline_rollback(state_dir, second2)
    assert answer == {"rolled_back": second2, "target": TARGET, "restored": first,
                      "excluded": True}
    with Snapshots(state_dir) as snapshots:
        state = snapshots.state.load()
        assert state.active == {TARGET: first}
        records = [r for r in snapshots.audit.records() if r.kind == "rolled_back"]
    assert [(r.body["version"], r.body["restored"]) for r in records] == \
        [(third, ""), (second2, first)]
    assert verify_file(state_dir / "audit.log").ok


def _cli(state_dir: Path, *args: str, ok: bool = True) -> dict[str, Any]:
    done = subprocess.run([*SELFMOD, *args, "--state-dir", str(state_dir), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    return dict(json.loads(done.stdout))  # an error is {"error": ...} with --json


def test_an_operators_no_sticks_offline_until_included(tmp_path: Path) -> None:
    """With no daemon running, `exclude` and a rollback keep the target out (in state.json,
    shown by `status`, audited); `include` lets it back; including it twice is an error."""
    state_dir = tmp_path / "state"
    with Snapshots(state_dir) as snapshots:
        (version,) = _activate_in_turn(Ledger.writer(snapshots), SOURCES[:1])
    other = "tests.daemon.fixtures.canary_targets:other"
    assert _cli(state_dir, "exclude", other, "--note", "owned by another team") == \
        {"excluded": other, "by": "operator"}
    _offline_rollback(state_dir, version)
    status = _cli(state_dir, "status")
    assert set(status["excluded"]) == {other, TARGET}
    assert status["excluded"][TARGET]["by"] == "rollback"
    assert _cli(state_dir, "include", TARGET) == {"included": TARGET}
    assert set(_cli(state_dir, "status")["excluded"]) == {other}
    assert "is not excluded" in str(_cli(state_dir, "include", TARGET, ok=False)["error"])
    with Snapshots(state_dir) as snapshots:
        kinds = [(r.kind, r.body.get("target")) for r in snapshots.audit.records()
                 if r.kind in ("excluded", "included")]
    assert kinds == [("excluded", other), ("excluded", TARGET), ("included", TARGET)]
    assert verify_file(state_dir / "audit.log").ok
