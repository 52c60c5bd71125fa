"""Versions: a candidate source for one target, named by the sha256 of that source.

A :class:`Version` is the full value that crosses stage boundaries, source
included. On disk it is split in two: the source lives in the object store
(``objects/<sha[:2]>/<sha>``, see :mod:`snapshots.store`), and everything else,
the :class:`VersionRecord`, lives in ``state.json`` next to the active patch
set (see :mod:`snapshots.state`). One file for all metadata means one atomic
rename changes a version's status and the active set together; a separate
``versions/`` index would need two renames and a story for a crash between them.

Because the id is the hash of the source alone, two targets that end up with
byte-identical sources would share an id; the state refuses that
(:class:`~snapshots.errors.VersionConflict`) rather than merge their metadata.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# Hex digits of an id that people read (logs, CLI tables, file names); the full id
# stays in JSON, state.json and the audit log.
SHORT_ID_LENGTH = 12
# Longest rejection detail kept in state.json and the audit log, in characters.
DETAIL_LIMIT = 2000


def short_id(version_id: str) -> str:
    """The first :data:`SHORT_ID_LENGTH` hex digits of a version id or a hash, for people."""
    return version_id[:SHORT_ID_LENGTH]


def source_sha(source: str) -> str:
    """The sha256 of a source text as UTF-8, in hex: a version's id, a base's hash."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


class VersionStatus(StrEnum):
    """Where a version is in its life; the value is what ``state.json`` stores."""

    PROPOSED = "proposed"  # stored, not (yet) judged
    REJECTED = "rejected"  # failed a stage; the evidence says which and why
    ACTIVE = "active"  # installed in the live process; exactly one per target
    ROLLED_BACK = "rolled_back"  # was active, taken out (canary, operator)
    STALE = "stale"  # was active, but the target's base changed or vanished
    # Not in the design's first list: an active version replaced by a newer
    # accepted one for the same target. Without it the old one would have to
    # claim "active" or "rolled_back", and both would be false.
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class VersionRecord:
    """Everything about a version except its source: what ``state.json`` keeps.

    ``parent`` is the id of the version this one was derived from, or None
    when it was derived from the original code (whose hash is ``base_sha``).
    ``evidence`` is JSON-able: speedup, ci_low, ci_high, calls, checks, reason …
    """

    id: str
    target: str
    base_sha: str
    origin: str
    parent: str | None
    created_at: float
    status: VersionStatus
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Version:
    """A candidate source for ``target``; ``id`` is ``source_sha(source)``, checked on creation."""

    id: str
    target: str
    base_sha: str
    source: str
    origin: str
    parent: str | None
    created_at: float
    status: VersionStatus
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.id != source_sha(self.source):
            raise ValueError(f"version id {self.id} is not the sha256 of its source")

    @classmethod
    def create(
        cls,
        *,
        target: str,
        base_sha: str,
        source: str,
        origin: str,
        created_at: float,
        parent: str | None = None,
        status: VersionStatus = VersionStatus.PROPOSED,
        evidence: Mapping[str, Any] | None = None,
    ) -> Version:
        """A new version, its id computed from the source."""
        return cls(
            id=source_sha(source),
            target=target,
            base_sha=base_sha,
            source=source,
            origin=origin,
            parent=parent,
            created_at=created_at,
            status=status,
            evidence=dict(evidence or {}),
        )

    @classmethod
    def from_record(cls, record: VersionRecord, source: str) -> Version:
        """Join a stored record with its (already verified) source."""
        return cls(source=source, **{f.name: getattr(record, f.name)
                                     for f in dataclasses.fields(record)})

    @property
    def record(self) -> VersionRecord:
        """This version without its source."""
        return VersionRecord(**{f.name: getattr(self, f.name)
                                for f in dataclasses.fields(VersionRecord)})
