"""state.json: the pure state changes, the file format, and atomic saves."""

from __future__ import annotations

import functools
import json
import threading
from pathlib import Path

import pytest

from snapshots import (
    State,
    StateError,
    StateStore,
    UnknownVersion,
    VersionConflict,
    VersionStatus,
    activate,
    deactivate,
    mark,
    with_version,
)
from snapshots.state import STATE_FORMAT, exclude, include

from .factories import SOURCE, TARGET, make_version

V1 = make_version(created_at=1.0)
V2 = make_version(SOURCE + "# v2\n", created_at=2.0, parent=V1.id)


def two_versions() -> State:
    return with_version(with_version(State(), V1), V2)


def test_with_version_adds_a_record_without_touching_the_input() -> None:
    """with_version returns a new state holding the record and leaves the old state as it was."""
    empty = State()
    state = with_version(empty, V1)
    assert state.versions == {V1.id: V1.record}
    assert empty.versions == {}


def test_with_version_refuses_one_id_for_two_targets() -> None:
    """The same source recorded for another target raises VersionConflict."""
    state = with_version(State(), V1)
    other = make_version(target="shop.cart:subtotal")
    with pytest.raises(VersionConflict, match="subtotal"):
        with_version(state, other)


def test_with_version_cannot_sneak_in_an_active_status() -> None:
    """Recording a version as active without activate() raises StateError."""
    record = activate(with_version(State(), V1), TARGET, V1.id).versions[V1.id]
    with pytest.raises(StateError, match="activate"):
        with_version(State(), record)


def test_activate_supersedes_the_previous_version() -> None:
    """Activating a second version of a target marks the first superseded."""
    state = activate(two_versions(), TARGET, V1.id)
    state = activate(state, TARGET, V2.id)
    assert state.active == {TARGET: V2.id}
    assert state.versions[V1.id].status is VersionStatus.SUPERSEDED
    assert state.versions[V2.id].status is VersionStatus.ACTIVE


def test_activate_checks_the_version_and_its_target() -> None:
    """Activating an unknown id or another target's version raises."""
    with pytest.raises(UnknownVersion):
        activate(State(), TARGET, "0" * 64)
    with pytest.raises(StateError, match="belongs to"):
        activate(two_versions(), "shop.cart:subtotal", V1.id)


def test_deactivate_marks_and_removes_and_is_idempotent() -> None:
    """Deactivating sets the status and empties the target's slot; a second call changes nothing."""
    state = deactivate(activate(two_versions(), TARGET, V2.id), TARGET, VersionStatus.ROLLED_BACK)
    assert state.active == {}
    assert state.versions[V2.id].status is VersionStatus.ROLLED_BACK
    assert deactivate(state, TARGET, VersionStatus.ROLLED_BACK) == state


def test_deactivate_as_rejected_for_a_tampered_source() -> None:
    """A version found tampered at restart can leave the active set as rejected."""
    state = deactivate(activate(two_versions(), TARGET, V1.id), TARGET, VersionStatus.REJECTED)
    assert (state.active, state.versions[V1.id].status) == ({}, VersionStatus.REJECTED)


def test_deactivate_only_to_a_leaving_status() -> None:
    """A version cannot leave the active set as proposed or active."""
    state = activate(two_versions(), TARGET, V2.id)
    with pytest.raises(ValueError, match="leaves the active set"):
        deactivate(state, TARGET, VersionStatus.PROPOSED)


def test_mark_sets_status_and_merges_evidence() -> None:
    """mark() changes the status and adds evidence to what was there."""
    state = with_version(State(), make_version(evidence={"calls": 200}))
    state = mark(state, V1.id, VersionStatus.REJECTED, stage="shadow", reason="mismatch")
    record = state.versions[V1.id]
    assert record.status is VersionStatus.REJECTED
    assert record.evidence == {"calls": 200, "stage": "shadow", "reason": "mismatch"}


def test_mark_keeps_the_active_set_in_step() -> None:
    """mark() refuses to make a version active, or an active version anything else."""
    state = two_versions()
    with pytest.raises(StateError, match="activate"):
        mark(state, V1.id, VersionStatus.ACTIVE)
    state = activate(state, TARGET, V1.id)
    with pytest.raises(StateError, match="deactivate"):
        mark(state, V1.id, VersionStatus.STALE)
    assert mark(state, V1.id, VersionStatus.ACTIVE, canary="passed").versions[V1.id].evidence == {
        "canary": "passed"}


def test_history_is_newest_first() -> None:
    """State.history lists records by creation time, newest first."""
    assert [r.id for r in two_versions().history()] == [V2.id, V1.id]


def test_missing_file_is_the_empty_state(tmp_path: Path) -> None:
    """Loading with no state.json gives an empty state."""
    assert StateStore(tmp_path).load() == State()


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    """A saved state loads back equal, stamped with the store's clock."""
    store = StateStore(tmp_path, clock=lambda: 1234.5)
    state = activate(with_version(two_versions(), make_version(
        "def other(): pass\n", target="m:other", evidence={"speedup": 1.5, "ci": [1.2, 1.8]})),
        TARGET, V2.id)
    written = store.save(state)
    assert written.updated_at == 1234.5
    assert store.load() == written
    raw = json.loads((tmp_path / "state.json").read_text(encoding="utf-8"))
    assert raw["format"] == STATE_FORMAT
    assert raw["active"] == {TARGET: V2.id}
    assert raw["versions"][V2.id]["status"] == "active"
    assert raw["versions"][V2.id]["parent"] == V1.id


def test_an_exclusion_is_kept_until_included_and_an_old_file_has_none(tmp_path: Path) -> None:
    """exclude() keeps the first entry, include() removes it, both survive a save; a
    format-1 file (written before exclusions existed) loads with none."""
    store = StateStore(tmp_path, clock=lambda: 5.0)
    state = exclude(two_versions(), TARGET, by="operator", note="too risky", at=3.0)
    assert exclude(state, TARGET, by="rollback", note="again", at=4.0) is state
    store.save(state)
    assert store.load().excluded == {TARGET: {"at": 3.0, "by": "operator", "note": "too risky"}}
    raw = json.loads((tmp_path / "state.json").read_text(encoding="utf-8"))
    assert raw["excluded"][TARGET]["by"] == "operator"
    store.save(include(store.load(), TARGET))
    assert store.load().excluded == {}
    (tmp_path / "state.json").write_text(
        '{"format": 1, "versions": {}, "active": {}, "updated_at": 0}', encoding="utf-8")
    assert store.load().excluded == {}


def test_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    """After saves only state.json is in the directory."""
    store = StateStore(tmp_path)
    store.save(two_versions())
    store.save(activate(two_versions(), TARGET, V1.id))
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_save_refuses_an_inconsistent_state(tmp_path: Path) -> None:
    """A state whose active set names an unknown version is not written."""
    with pytest.raises(StateError, match="inconsistent"):
        StateStore(tmp_path).save(State(active={TARGET: V1.id}))
    assert not (tmp_path / "state.json").exists()


@pytest.mark.parametrize("content,match", [
    ("{not json", "not valid JSON"),
    ("[]", "JSON object"),
    ('{"format": 3, "versions": {}, "active": {}, "updated_at": 0}', "format 3"),
    ('{"format": 2, "versions": {}, "active": {}, "updated_at": 0, "excluded": {"m:f": {}}}',
     "malformed"),
    ('{"format": 1, "versions": {"x": {"id": "y"}}, "active": {}, "updated_at": 0}', "malformed"),
    ('{"format": 1, "versions": {}, "active": {"m:f": "abc"}, "updated_at": 0}', "inconsistent"),
])
def test_damaged_files_raise_state_error_naming_file_and_remedy(
        tmp_path: Path, content: str, match: str) -> None:
    """A corrupt, foreign or inconsistent state.json raises StateError naming it and what to do."""
    path = tmp_path / "state.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(StateError, match=match) as info:
        StateStore(tmp_path).load()
    assert str(path) in str(info.value)
    assert "move" in str(info.value)


def test_unknown_status_is_malformed(tmp_path: Path) -> None:
    """A version with a status this release does not know makes the file malformed."""
    store = StateStore(tmp_path)
    store.save(two_versions())
    raw = json.loads(store.path.read_text(encoding="utf-8"))
    raw["versions"][V1.id]["status"] = "blessed"
    store.path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(StateError, match="malformed"):
        store.load()


def test_concurrent_updates_lose_nothing(tmp_path: Path) -> None:
    """Eight threads each adding versions through update() all end up in the file."""
    store = StateStore(tmp_path)

    def work(worker: int) -> None:
        for n in range(5):
            version = make_version(f"def f(): return {worker * 100 + n}\n", target=f"m:f{worker}")
            store.update(functools.partial(with_version, version=version))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.load().versions) == 40


def test_remove_temps_deletes_only_leftovers(tmp_path: Path) -> None:
    """remove_temps deletes temporary files a crash left and nothing else."""
    store = StateStore(tmp_path)
    store.save(two_versions())
    leftover = tmp_path / ".state-abc123.tmp"
    leftover.write_bytes(b"{half")
    assert store.remove_temps() == [leftover]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
