"""The Snapshots facade: the state directory's layout, its lock, recovery and restore_plan."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from snapshots import (
    SnapshotError,
    Snapshots,
    StateDirLocked,
    VersionStatus,
    activate,
)

from .factories import BASE, TARGET, make_version


def test_layout_is_created_private(tmp_path: Path) -> None:
    """Opening creates objects/ and corpus/ and makes the state directory mode 0700."""
    state_dir = tmp_path / "state"
    with Snapshots(state_dir) as snaps:
        assert snaps.corpus_dir == state_dir / "corpus"
    assert (state_dir / "objects").is_dir()
    assert (state_dir / "corpus").is_dir()
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700


def test_existing_directory_is_tightened(tmp_path: Path) -> None:
    """A state directory readable by others is made private on open."""
    tmp_path.chmod(0o755)
    with Snapshots(tmp_path):
        pass
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700


def test_second_writer_is_refused(tmp_path: Path) -> None:
    """While one Snapshots holds the directory, opening another raises StateDirLocked."""
    with Snapshots(tmp_path), pytest.raises(StateDirLocked, match="in use"):
        Snapshots(tmp_path)
    with Snapshots(tmp_path):
        pass


def test_open_removes_leftover_temporary_files(tmp_path: Path) -> None:
    """Temporary files a crashed writer left are deleted when the directory is opened."""
    with Snapshots(tmp_path) as snaps:
        snaps.add_version(make_version())
    leftovers = [tmp_path / ".state-x.tmp", tmp_path / "objects" / "ab" / ".object-y.tmp",
                 tmp_path / "corpus" / "shop" / "total" / ".corpus-z.tmp"]
    leftovers[1].parent.mkdir()
    leftovers[2].parent.mkdir(parents=True)
    for path in leftovers:
        path.write_bytes(b"half")
    with Snapshots(tmp_path) as snaps:
        assert sorted(snaps.removed_temps) == sorted(leftovers)
    assert not any(path.exists() for path in leftovers)


def test_add_version_stores_source_before_state(tmp_path: Path) -> None:
    """add_version stores the source and records the metadata as proposed."""
    version = make_version()
    with Snapshots(tmp_path) as snaps:
        state = snaps.add_version(version)
        assert state.versions[version.id].status is VersionStatus.PROPOSED
        assert snaps.store.get(version.id) == version


def test_restore_plan_applies_matching_and_flags_tampered_on_disk(tmp_path: Path) -> None:
    """restore_plan reads the real store: an intact match applies, an edited object is tampered."""
    version = make_version()
    with Snapshots(tmp_path) as snaps:
        snaps.add_version(version)
        snaps.state.update(lambda state: activate(state, TARGET, version.id))
        [ok] = snaps.restore_plan(lambda target: BASE)
        assert ok.action == "apply"
        snaps.store.object_path(version.id).write_text("import os\n", encoding="utf-8")
        [bad] = snaps.restore_plan(lambda target: BASE)
        assert bad.action == "tampered"
        assert str(snaps.store.object_path(version.id)) in bad.reason
        [changed] = snaps.restore_plan(lambda target: "0" * 64)
        assert changed.action == "tampered"


def test_object_format_is_recorded_and_checked(tmp_path: Path) -> None:
    """objects/FORMAT is written on first open, and a foreign format refuses to open."""
    with Snapshots(tmp_path):
        pass
    marker = tmp_path / "objects" / "FORMAT"
    assert marker.read_text(encoding="ascii") == "1\n"
    marker.write_text("2\n", encoding="ascii")
    with pytest.raises(SnapshotError, match="object format '2'"):
        Snapshots(tmp_path)
    marker.write_text("1\n", encoding="ascii")
    with Snapshots(tmp_path):  # the failed open released the lock
        pass
