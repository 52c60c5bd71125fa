"""The daemon's book of versions: every state change of a version, persisted as it happens.

A thin layer over :mod:`snapshots`: sources go to the content-addressed store,
metadata and the active set to ``state.json`` (each change a load-change-save
under the store's lock, written atomically). The audit trail is written by the
event bus subscriber, not here, so that each decision is recorded exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from daemon.synthesis.base import Candidate
from snapshots import Snapshots
from snapshots.audit import AuditLog
from snapshots.errors import SnapshotError, UnknownVersion
from snapshots.state import (
    StateStore,
    activate,
    deactivate,
    exclude,
    include,
    mark,
    with_version,
)
from snapshots.store import VersionStore
from snapshots.versions import DETAIL_LIMIT, Version, VersionRecord, VersionStatus, short_id


class Ledger:
    """Versions and the active set, as the daemon changes them.

    The daemon's ledger is built on the locked :class:`Snapshots` writer; the
    CLI reads through :meth:`reader`, which takes no lock and never writes, so
    ``history`` and ``diff`` work while the daemon runs.
    """

    def __init__(self, store: VersionStore, state: StateStore, audit: AuditLog | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.state = state
        self.audit = audit
        self._clock = clock

    @classmethod
    def writer(cls, snapshots: Snapshots, clock: Callable[[], float] = time.time) -> Ledger:
        return cls(snapshots.store, snapshots.state, snapshots.audit, clock)

    @classmethod
    def reader(cls, state_dir: Path) -> Ledger:
        if not state_dir.is_dir():
            raise SnapshotError(f"no state directory at {state_dir}; pass --state-dir "
                                "(the daemon's default is ./.selfmod)")
        return cls(VersionStore(state_dir), StateStore(state_dir))

    # -- reading ----------------------------------------------------------------------

    def source(self, sha: str) -> str:
        """A stored source, re-hashed on load (a tampered object raises IntegrityError)."""
        return self.store.get_source(sha)

    def history(self) -> list[VersionRecord]:
        return self.state.load().history()

    def find(self, prefix: str) -> VersionRecord:
        """The version whose id starts with ``prefix`` (at least 4 characters, unambiguous)."""
        if len(prefix) < 4:
            raise UnknownVersion(f"version id {prefix!r} is too short; give at least 4 characters")
        matches = [r for vid, r in self.state.load().versions.items()
                   if vid.startswith(prefix)]
        if not matches:
            raise UnknownVersion(f"no version starts with {prefix!r}; see `selfmod history`")
        if len(matches) > 1:
            raise UnknownVersion(f"{prefix!r} matches {len(matches)} versions; give more "
                                 "characters")
        return matches[0]

    def active_version(self, target: str) -> Version | None:
        state = self.state.load()
        vid = state.active.get(target)
        if vid is None:
            return None
        return Version.from_record(state.versions[vid], self.source(vid))

    def excluded(self) -> dict[str, dict[str, Any]]:
        """The targets kept out of synthesis: target -> {at, by, note}."""
        return {t: dict(e) for t, e in self.state.load().excluded.items()}

    def active_versions(self) -> list[VersionRecord]:
        return self.state.load().active_records()

    def was_rejected(self, version_id: str) -> bool:
        """Whether a version was rejected or rolled back: either way it is not proposed again."""
        record = self.state.load().versions.get(version_id)
        return record is not None and record.status in (VersionStatus.REJECTED,
                                                        VersionStatus.ROLLED_BACK)

    # -- changing ---------------------------------------------------------------------

    def remember_base(self, target: str, base_sha: str, original: str) -> None:
        """Keep the original source too, so that diffs and exports work offline."""
        self.store.put_source(original)

    def propose(self, candidate: Candidate, base_sha: str) -> str:
        """Store a candidate as a proposed version (idempotent); returns its id."""
        vid = self.store.put_source(candidate.source)
        parent = candidate.parent if candidate.parent != base_sha else None

        def change(state: Any) -> Any:
            if vid in state.versions:
                return state
            version = Version.create(target=candidate.target, base_sha=base_sha,
                                     source=candidate.source, origin=candidate.origin,
                                     created_at=self._clock(), parent=parent)
            return with_version(state, version)

        self.state.update(change)
        return vid

    def reject(self, version_id: str, stage: str, reason: str, detail: str = "",
               extra: Mapping[str, Any] | None = None) -> None:
        """Mark a version rejected; ``extra`` is more evidence (what the checks ran)."""
        self._mark(version_id, VersionStatus.REJECTED,
                   {**(extra or {}), "stage": stage, "reason": reason,
                    "detail": detail[:DETAIL_LIMIT]})

    def await_approval(self, version_id: str, evidence: Mapping[str, Any]) -> None:
        self._mark(version_id, VersionStatus.PROPOSED, {**evidence, "awaiting_approval": True})

    def activate(self, target: str, version_id: str, evidence: Mapping[str, Any]) -> None:
        """Make ``version_id`` the active version of ``target``.

        The version it replaces (now superseded) is named in its evidence as
        ``replaces``, so that a rollback, even one after a restart, knows what
        to put back.
        """
        def change(state: Any) -> Any:
            replaced = state.active.get(target)
            state = activate(state, target, version_id)
            if replaced != version_id:
                evidence_now = {**evidence, "replaces": replaced or ""}
            else:
                evidence_now = dict(evidence)
            return mark(state, version_id, VersionStatus.ACTIVE, **evidence_now,
                        awaiting_approval=False)

        self.state.update(change)

    def roll_back(self, target: str, version_id: str, reason: str, reinstate: str) -> bool:
        """Mark ``version_id`` rolled back and make ``reinstate`` active again ("" for none).

        ``reinstate`` is the version the live code falls back to, as the swap
        manager knows it. Nothing changes (False) when ``version_id`` is no
        longer the active version, so repeating a rollback after a crash is harmless.
        """
        changed = False

        def change(state: Any) -> Any:
            nonlocal changed
            if state.active.get(target) != version_id:
                return state
            changed = True
            state = deactivate(state, target, VersionStatus.ROLLED_BACK)
            state = mark(state, version_id, VersionStatus.ROLLED_BACK, reason=reason,
                         reinstated=reinstate)
            if not reinstate:
                return state
            state = activate(state, target, reinstate)
            return mark(state, reinstate, VersionStatus.ACTIVE, reinstated_after=version_id)

        self.state.update(change)
        return changed

    def deactivate(self, target: str, version_id: str, status: str, reason: str) -> None:
        def change(state: Any) -> Any:
            if state.active.get(target) != version_id:
                return state
            state = deactivate(state, target, VersionStatus(status))
            return mark(state, version_id, VersionStatus(status), reason=reason)

        self.state.update(change)

    def exclude(self, target: str, by: str, note: str = "") -> bool:
        """Keep ``target`` out of synthesis; False when it was out already."""
        changed = False

        def change(state: Any) -> Any:
            nonlocal changed
            changed = target not in state.excluded
            return exclude(state, target, by=by, note=note, at=self._clock())

        self.state.update(change)
        return changed

    def include(self, target: str) -> bool:
        """Let synthesis try ``target`` again; False when it was not excluded."""
        changed = False

        def change(state: Any) -> Any:
            nonlocal changed
            changed = target in state.excluded
            return include(state, target)

        self.state.update(change)
        return changed

    def _mark(self, version_id: str, status: VersionStatus, evidence: Mapping[str, Any]) -> None:
        self.state.update(lambda state: mark(state, version_id, status, **evidence))

    # -- offline operations (no daemon running) ----------------------------------------

    def rollback_offline(self, prefix: str, *, excludes: bool = True) -> dict[str, Any]:
        """Take a version out of the active set of a stopped daemon, with an audit record;
        with ``excludes``, the target stays out of synthesis until included again."""
        record = self.find(prefix)
        if record.status is not VersionStatus.ACTIVE:
            raise UnknownVersion(f"version {short_id(record.id)} is {record.status}, not active")
        if self.audit is None:
            raise SnapshotError("internal: offline rollback needs the writer's ledger")
        # fall back to the version it replaced, as the live daemon would, if that one is
        # still intact; the next start re-applies it after the usual base and hash checks
        replaced = record.evidence.get("replaces") or ""
        earlier = self.state.load().versions.get(replaced)
        if earlier is None or earlier.status is not VersionStatus.SUPERSEDED:
            replaced = ""
        self.roll_back(record.target, record.id, "operator", reinstate=replaced)
        self.audit.append("rolled_back", {"target": record.target,
                                          "version": record.id, "reason": "operator",
                                          "detail": "offline: daemon not running",
                                          "restored": replaced})
        answer = {"rolled_back": record.id, "target": record.target, "restored": replaced}
        if excludes:
            self.exclude_offline(record.target, "rollback",
                                 f"rolled back {short_id(record.id)} by hand")
        answer["excluded"] = excludes
        return answer

    def exclude_offline(self, target: str, by: str = "operator", note: str = "") -> dict[str, Any]:
        """Keep ``target`` out of a stopped daemon's synthesis, with an audit record."""
        if self.audit is None:
            raise SnapshotError("internal: offline exclude needs the writer's ledger")
        if self.exclude(target, by, note):
            self.audit.append("excluded", {"target": target, "by": by, "note": note})
        return {"excluded": target, "by": by}

    def include_offline(self, target: str) -> dict[str, Any]:
        """Let a stopped daemon's synthesis try ``target`` again, with an audit record."""
        if self.audit is None:
            raise SnapshotError("internal: offline include needs the writer's ledger")
        if not self.include(target):
            raise SnapshotError(f"{target} is not excluded; `selfmod status` lists what is")
        self.audit.append("included", {"target": target})
        return {"included": target}
