"""state.json: the active patch set and every version's metadata, replaced atomically.

The file is small (one entry per version ever stored) and changes rarely (a
few times per synthesis cycle), so each change rewrites the whole file:
temporary file in the same directory, write, fsync, rename over state.json,
fsync of the directory. A crash at any step leaves the old state or the new one.

Layout (indented JSON, keys sorted, so an operator can read and diff it)::

    {"format": 2,
     "versions": {"<id>": {"id", "target", "base_sha", "origin", "parent",
                           "created_at", "status", "evidence"}},
     "active": {"<target>": "<id>"},
     "excluded": {"<target>": {"at": <unix time>, "by": "operator" | "rollback",
                               "note": "<why>"}},
     "updated_at": <unix time of the save>}

``excluded`` holds the targets an operator keeps out of synthesis (``selfmod
exclude``, or a rollback by hand) until ``selfmod include``.

Invariant, checked on load and kept by the helpers: a version is in
``active`` exactly when its status is ``active``, and under its own target.

Changes are pure functions from one :class:`State` to the next
(:func:`with_version`, :func:`activate`, :func:`deactivate`, :func:`mark`,
:func:`exclude`, :func:`include`);
:meth:`StateStore.update` applies one under a lock and saves the result.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _atomic, crash
from .errors import StateError, UnknownVersion, VersionConflict
from .versions import Version, VersionRecord, VersionStatus

# History of STATE_FORMAT:
#   1 — first format: {format, versions: {id: record}, active: {target: id}, updated_at}.
#   2 — adds excluded: {target: {at, by, note}}. Format 1 is read as having none.
STATE_FORMAT = 2
READABLE_FORMATS = (1, 2)
STATE_FILE = "state.json"
TEMP_PREFIX = "state"

# Statuses a version may leave the active set with; rejected is for a version
# found unusable at restart (its stored source failed its hash check).
LEAVING_STATUSES = frozenset({VersionStatus.ROLLED_BACK, VersionStatus.STALE,
                              VersionStatus.SUPERSEDED, VersionStatus.REJECTED})


@dataclass(frozen=True)
class State:
    """The durable state: version metadata by id, and the active version id by target."""

    versions: Mapping[str, VersionRecord] = field(default_factory=dict)
    active: Mapping[str, str] = field(default_factory=dict)
    updated_at: float = 0.0
    # targets kept out of synthesis: target -> {"at": time, "by": who, "note": why}
    excluded: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def history(self) -> list[VersionRecord]:
        """Every version's record, newest first."""
        return sorted(self.versions.values(), key=lambda r: (r.created_at, r.id), reverse=True)

    def active_records(self) -> list[VersionRecord]:
        """The active version of each target, ordered by target."""
        return [self.versions[vid] for _, vid in sorted(self.active.items())]


# -- pure changes ------------------------------------------------------------------------------


def with_version(state: State, version: Version | VersionRecord) -> State:
    """``state`` with ``version``'s record added, or replaced if it is already known.

    Recording an id already known for another target or base raises
    VersionConflict; recording a status of ``active`` this way raises
    StateError (use :func:`activate`, which keeps ``active`` in step).
    """
    record = version.record if isinstance(version, Version) else version
    known = state.versions.get(record.id)
    if known is not None and (known.target, known.base_sha) != (record.target, record.base_sha):
        raise VersionConflict(
            f"version {record.id} is already recorded for {known.target} (base {known.base_sha}); "
            f"the same source for {record.target} (base {record.base_sha}) cannot share its id"
        )
    is_active = state.active.get(record.target) == record.id
    if (record.status is VersionStatus.ACTIVE) != is_active:
        raise StateError(
            f"version {record.id} has status {record.status} but is "
            f"{'' if is_active else 'not '}the active version of {record.target}; "
            "use activate() or deactivate() to change what is active"
        )
    return dataclasses.replace(state, versions={**state.versions, record.id: record})


def activate(state: State, target: str, version_id: str) -> State:
    """``state`` with ``version_id`` active for ``target``; the one it replaces is superseded."""
    record = _known(state, version_id)
    if record.target != target:
        raise StateError(f"version {version_id} belongs to {record.target}, not {target}")
    versions = dict(state.versions)
    previous = state.active.get(target)
    if previous is not None and previous != version_id:
        versions[previous] = dataclasses.replace(
            versions[previous], status=VersionStatus.SUPERSEDED)
    versions[version_id] = dataclasses.replace(record, status=VersionStatus.ACTIVE)
    active = {**state.active, target: version_id}
    return dataclasses.replace(state, versions=versions, active=active)


def deactivate(state: State, target: str, status: VersionStatus) -> State:
    """``state`` with nothing active for ``target`` and its former version marked ``status``.

    ``status`` is rolled_back, stale, superseded or rejected. A target with nothing
    active is left as it is, so repeating a rollback after a crash is harmless.
    If the live code falls back to an earlier version rather than to the
    original, :func:`activate` that version afterwards.
    """
    status = VersionStatus(status)
    if status not in LEAVING_STATUSES:
        raise ValueError(f"a version leaves the active set as one of "
                         f"{sorted(LEAVING_STATUSES)}, not {status}")
    version_id = state.active.get(target)
    if version_id is None:
        return state
    versions = {**state.versions,
                version_id: dataclasses.replace(state.versions[version_id], status=status)}
    active = {t: v for t, v in state.active.items() if t != target}
    return dataclasses.replace(state, versions=versions, active=active)


def mark(state: State, version_id: str, status: VersionStatus, **evidence: Any) -> State:
    """``state`` with ``version_id``'s status set and ``evidence`` merged into its evidence.

    Moving a version into or out of the active set goes through
    :func:`activate` and :func:`deactivate`; asking ``mark`` to do it raises
    StateError. Marking an active version ``active`` again only adds evidence.
    """
    status = VersionStatus(status)
    record = _known(state, version_id)
    is_active = state.active.get(record.target) == version_id
    if (status is VersionStatus.ACTIVE) != is_active:
        raise StateError(
            f"cannot mark version {version_id} {status} while it is "
            f"{'' if is_active else 'not '}active; use activate() or deactivate()"
        )
    updated = dataclasses.replace(record, status=status, evidence={**record.evidence, **evidence})
    return dataclasses.replace(state, versions={**state.versions, version_id: updated})


def exclude(state: State, target: str, *, by: str, note: str, at: float) -> State:
    """``state`` with ``target`` kept out of synthesis (an earlier exclusion is kept)."""
    if target in state.excluded:
        return state
    entry = {"at": float(at), "by": str(by), "note": str(note)}
    return dataclasses.replace(state, excluded={**state.excluded, target: entry})


def include(state: State, target: str) -> State:
    """``state`` with ``target`` back among what synthesis may try."""
    if target not in state.excluded:
        return state
    return dataclasses.replace(state, excluded={t: e for t, e in state.excluded.items()
                                                if t != target})


def _known(state: State, version_id: str) -> VersionRecord:
    try:
        return state.versions[version_id]
    except KeyError:
        raise UnknownVersion(f"no version {version_id} in the state") from None


# -- encoding ----------------------------------------------------------------------------------


def encode_state(state: State) -> bytes:
    """The bytes of state.json for ``state``."""
    payload = {
        "format": STATE_FORMAT,
        "versions": {vid: {**dataclasses.asdict(record), "status": record.status.value,
                           "evidence": dict(record.evidence)}
                     for vid, record in state.versions.items()},
        "active": dict(state.active),
        "excluded": {target: dict(entry) for target, entry in state.excluded.items()},
        "updated_at": state.updated_at,
    }
    try:
        text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StateError(f"state cannot be written as JSON: {exc}") from exc
    return (text + "\n").encode("utf-8")


def decode_state(data: bytes, path: Path) -> State:
    """The State in ``data`` read from ``path``; StateError naming the file if it is not one."""
    advice = ("state.json is only ever replaced whole, so this is damage from outside selfmod: "
              "restore it from a backup, or move it aside to start with no active patches "
              "(the audit log keeps the history)")
    try:
        payload = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise StateError(f"{path} is not valid JSON ({exc}); {advice}") from exc
    if not isinstance(payload, dict):
        raise StateError(f"{path} does not hold a JSON object; {advice}")
    if payload.get("format") not in READABLE_FORMATS:
        raise StateError(
            f"{path} has format {payload.get('format')!r}, but this selfmod reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))}: run the selfmod release that wrote it, "
            "or move the file aside"
        )
    try:
        versions = {vid: _decode_record(vid, raw) for vid, raw in payload["versions"].items()}
        active = {str(target): str(vid) for target, vid in payload["active"].items()}
        excluded = {str(target): {"at": float(entry["at"]), "by": str(entry["by"]),
                                  "note": str(entry["note"])}
                    for target, entry in payload.get("excluded", {}).items()}
        state = State(versions=versions, active=active, updated_at=float(payload["updated_at"]),
                      excluded=excluded)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"{path} has a malformed entry ({exc!r}); {advice}") from exc
    problem = _inconsistency(state)
    if problem:
        raise StateError(f"{path} is inconsistent: {problem}; {advice}")
    return state


def _decode_record(vid: str, raw: dict[str, Any]) -> VersionRecord:
    if raw["id"] != vid:
        raise ValueError(f"entry {vid} carries id {raw['id']}")
    parent = raw["parent"]
    return VersionRecord(
        id=vid,
        target=str(raw["target"]),
        base_sha=str(raw["base_sha"]),
        origin=str(raw["origin"]),
        parent=None if parent is None else str(parent),
        created_at=float(raw["created_at"]),
        status=VersionStatus(raw["status"]),
        evidence=dict(raw["evidence"]),
    )


def _inconsistency(state: State) -> str:
    for target, vid in state.active.items():
        record = state.versions.get(vid)
        if record is None:
            return f"{target} is active with unknown version {vid}"
        if record.target != target:
            return f"{target} is active with version {vid}, which belongs to {record.target}"
    for record in state.versions.values():
        if record.status is VersionStatus.ACTIVE and state.active.get(record.target) != record.id:
            return f"version {record.id} says active but is not in the active set"
    return ""


# -- the file ----------------------------------------------------------------------------------


class StateStore:
    """Loads and atomically saves ``<root>/state.json``."""

    def __init__(self, root: Path, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.path = root / STATE_FILE
        self._clock = clock
        self._lock = threading.Lock()

    def load(self) -> State:
        """The saved state; an empty State if there is no file yet."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return State()
        except OSError as exc:
            raise StateError(f"cannot read {self.path}: {exc}") from exc
        return decode_state(data, self.path)

    def save(self, state: State) -> State:
        """Replace state.json with ``state`` stamped with the time now; return what was written."""
        problem = _inconsistency(state)
        if problem:
            raise StateError(f"refusing to save an inconsistent state: {problem}")
        stamped = dataclasses.replace(state, updated_at=float(self._clock()))
        data = encode_state(stamped)
        try:
            _atomic.write_atomic(self.path, data, prefix=TEMP_PREFIX, crash_prefix="state")
        except OSError as exc:
            raise StateError(f"cannot write {self.path}: {exc}") from exc
        crash.crash_point("state.dir_synced")
        return stamped

    def update(self, change: Callable[[State], State]) -> State:
        """Load, apply ``change`` and save under one lock, so concurrent updates lose nothing."""
        with self._lock:
            return self.save(change(self.load()))

    def remove_temps(self) -> list[Path]:
        """Delete temporary files a crashed save left (only the state directory's owner may)."""
        return _atomic.remove_temps(self.root, TEMP_PREFIX)
