"""Errors raised by the snapshots package.

Every error is a :class:`SnapshotError`, so a caller that only wants to know
"the durable store said no" catches one class::

    SnapshotError
    ├── IntegrityError          a stored object does not match its hash
    ├── ObjectMissing           no stored object under that hash (also a LookupError)
    ├── CorpusError             a corpus file is missing, unreadable or of an unknown format
    ├── AuditError              the audit log cannot be read, continued or written
    │   ├── AuditTampered       the chain is broken; ``.seq`` names the first bad record
    │   │   └── AuditRefused    the writer will not append to a log its checkpoints disown
    │   └── AnchorError         the signing key or checkpoint file cannot be used
    └── StateError              state.json is unreadable, of an unknown format or inconsistent
        ├── StateDirLocked      another process owns the state directory
        ├── UnknownVersion      a version id the state does not know (also a LookupError)
        └── VersionConflict     one id (one source) claimed for two targets or bases

Errors an operator can cause or fix name the file and say what to do.
Operating-system errors are translated where they cross into this package,
with ``raise ... from exc`` so the cause stays in the traceback.
"""

from __future__ import annotations

from pathlib import Path


class SnapshotError(Exception):
    """Base of every error raised by the snapshots package."""


class CorpusError(SnapshotError):
    """A corpus file is missing, unreadable or of an unknown format."""


class IntegrityError(SnapshotError):
    """A stored object's content does not hash to its name: it was altered on disk."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        super().__init__(
            f"{path}: content hashes to {actual}, expected {expected}; the object was altered "
            "after it was stored and will not be used"
        )
        self.path = path
        self.expected = expected
        self.actual = actual


class ObjectMissing(SnapshotError, LookupError):
    """No stored object exists under the requested hash."""


class AuditError(SnapshotError):
    """The audit log cannot be read, continued or appended to."""


class AuditTampered(AuditError):
    """The audit chain is broken inside the log (not a torn last line)."""

    def __init__(self, message: str, seq: int) -> None:
        super().__init__(message)
        self.seq = seq


class StateError(SnapshotError):
    """state.json cannot be read or written, or a change would make it inconsistent."""


class StateDirLocked(StateError):
    """Another process holds the state directory's lock."""


class UnknownVersion(StateError, LookupError):
    """The state has no version with that id."""


class VersionConflict(StateError):
    """A version id (the hash of a source) is already recorded for another target or base."""


class AnchorError(AuditError):
    """The audit anchor cannot be used: its key or checkpoint file is unreadable or misplaced."""


class AuditRefused(AuditTampered):
    """The writer will not append: the log fails its check against the signed checkpoints.

    Nothing was written. ``.seq`` names the first record that cannot be trusted.
    """
