"""The content-addressed object store and the version values it holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from snapshots import (
    IntegrityError,
    ObjectMissing,
    StateStore,
    UnknownVersion,
    Version,
    VersionStatus,
    VersionStore,
    activate,
    source_sha,
    with_version,
)

from .factories import BASE, SOURCE, make_version


def test_round_trip(tmp_path: Path) -> None:
    """A stored source comes back unchanged under the sha256 of its UTF-8 text."""
    store = VersionStore(tmp_path)
    text = "def f():\n    return 'naïve ☃'\n"
    sha = store.put_source(text)
    assert sha == source_sha(text)
    assert store.object_path(sha) == tmp_path / "objects" / sha[:2] / sha
    assert store.get_source(sha) == text


def test_put_is_idempotent(tmp_path: Path) -> None:
    """Storing the same source twice writes nothing the second time and leaves no temp files."""
    store = VersionStore(tmp_path)
    sha = store.put_source(SOURCE)
    path = store.object_path(sha)
    before = path.stat()
    assert store.put_source(SOURCE) == sha
    after = path.stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert sorted(p.name for p in path.parent.iterdir()) == [sha]


def test_tampered_object_raises_and_is_never_returned(tmp_path: Path) -> None:
    """An object edited on disk raises IntegrityError naming the path and both hashes."""
    store = VersionStore(tmp_path)
    sha = store.put_source(SOURCE)
    path = store.object_path(sha)
    path.write_text(SOURCE.replace("sum", "max"), encoding="utf-8")
    with pytest.raises(IntegrityError) as info:
        store.get_source(sha)
    assert info.value.path == path
    assert info.value.expected == sha
    assert info.value.actual == source_sha(SOURCE.replace("sum", "max"))
    assert "max" not in str(info.value)


def test_put_heals_a_tampered_object(tmp_path: Path) -> None:
    """Putting the genuine source again replaces a damaged copy."""
    store = VersionStore(tmp_path)
    sha = store.put_source(SOURCE)
    store.object_path(sha).write_bytes(b"garbage")
    assert store.put_source(SOURCE) == sha
    assert store.get_source(sha) == SOURCE


def test_missing_and_malformed_names_raise_object_missing(tmp_path: Path) -> None:
    """An unknown hash or a name that is not a sha256 raises ObjectMissing, a LookupError."""
    store = VersionStore(tmp_path)
    with pytest.raises(ObjectMissing):
        store.get_source("0" * 64)
    with pytest.raises(LookupError):
        store.get_source("../state.json")


def test_version_id_must_be_the_hash_of_its_source() -> None:
    """A Version whose id is not the sha256 of its source cannot be built."""
    version = make_version()
    assert version.id == source_sha(SOURCE)
    with pytest.raises(ValueError, match="not the sha256"):
        Version(id="0" * 64, target="m:f", base_sha=BASE, source=SOURCE, origin="llm:x",
                parent=None, created_at=0.0, status=VersionStatus.PROPOSED)


def test_record_and_from_record_round_trip() -> None:
    """Splitting a version into record and source and joining them again gives the same value."""
    version = make_version(evidence={"speedup": 1.8, "calls": 200})
    assert Version.from_record(version.record, version.source) == version


def test_history_joins_state_and_sources_newest_first(tmp_path: Path) -> None:
    """history() returns every version with its source, the newest first."""
    store, states = VersionStore(tmp_path), StateStore(tmp_path)
    old = make_version(created_at=1.0)
    new = make_version(SOURCE + "\n# faster\n", created_at=2.0, parent=old.id)
    state = states.load()
    for version in (old, new):
        store.put_source(version.source)
        state = with_version(state, version)
    states.save(activate(state, new.target, new.id))
    history = store.history()
    assert [v.id for v in history] == [new.id, old.id]
    assert history[0].status is VersionStatus.ACTIVE
    assert history[1].status is VersionStatus.PROPOSED
    assert store.get(old.id).source == old.source
    with pytest.raises(UnknownVersion):
        store.get("f" * 64)


def test_history_refuses_a_tampered_source(tmp_path: Path) -> None:
    """history() raises IntegrityError rather than return a tampered source."""
    store, states = VersionStore(tmp_path), StateStore(tmp_path)
    version = make_version()
    store.put_source(version.source)
    states.save(with_version(states.load(), version))
    store.object_path(version.id).write_text("import os\n", encoding="utf-8")
    with pytest.raises(IntegrityError):
        store.history()
    assert [r.id for r in states.load().history()] == [version.id]
