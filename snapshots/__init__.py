"""Durable memory of the daemon: versions by content hash, the audit chain, the active set.

The state directory holds::

    objects/<sha[:2]>/<sha>   version sources, named by their sha256       (snapshots.store)
    objects/FORMAT            the object format number
    corpus/                   recorded calls per target and base           (snapshots.corpus)
    audit.log                 hash-chained JSON lines                      (snapshots.audit)
    state.json                version metadata and the active patch set    (snapshots.state)
    lock                      held (flock) by the one process that writes

:class:`Snapshots` is the writer's view: it takes the lock, so a second daemon
(or a CLI command that would repair or clean up) cannot write under the first,
removes temporary files a crash left and repairs a torn audit tail. Readers
(``selfmod status``, ``history``, ``audit verify``) use :class:`StateStore`,
:class:`VersionStore` and :func:`verify_file` directly; those never write.

Write order for a new version is object, then audit record, then state: a
crash between steps can leave an unreferenced object or an audit record of a
decision whose state change was lost, never a state naming a missing object.

With an :class:`Anchor` (a signing key and a checkpoint file, both outside
this directory), the audit log is checked against its signed checkpoints when
it is opened, and :class:`Snapshots` refuses to open (AuditRefused) when the
log fails that check: the daemon must not start on a log it cannot vouch for.

The bottom layer: it imports only the standard library and ``cryptography``, never :mod:`daemon`,
:mod:`envelope` or :mod:`invariants` (import-linter contracts in
``pyproject.toml``).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from .audit import AuditLog, AuditRecord, VerifyResult, read_records, verify_chain, verify_file
from .checkpoint import Anchor, Checkpoint
from .corpus import remove_corpus_temps
from .crash import CRASH_POINTS, crash_point
from .errors import (
    AnchorError,
    AuditError,
    AuditRefused,
    AuditTampered,
    IntegrityError,
    ObjectMissing,
    SnapshotError,
    StateDirLocked,
    StateError,
    UnknownVersion,
    VersionConflict,
)
from .keys import credential_key_path, generate_keypair, load_private_key, load_public_key
from .restore import RestoreAction, RestoreDecision, plan_restore
from .state import State, StateStore, activate, deactivate, mark, with_version
from .store import OBJECTS_DIR, VersionStore
from .versions import Version, VersionRecord, VersionStatus, source_sha

AUDIT_FILE = "audit.log"
CORPUS_DIR = "corpus"
LOCK_FILE = "lock"


class Snapshots:
    """The state directory, opened for writing by the one process that owns it.

    Creates the layout (the directory itself with mode 0700: it holds pickled
    corpora that the daemon loads), takes the lock, cleans up after a crash,
    and exposes ``.store``, ``.audit`` and ``.state``. ``removed_temps`` lists
    the temporary files a crashed writer had left; ``audit.repaired`` says
    whether the audit log's tail was repaired. ``anchor`` anchors the audit
    log (see :class:`snapshots.audit.AuditLog`, also for ``on_checkpoint``);
    without it the log is unanchored.
    """

    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time,
                 anchor: Anchor | None = None,
                 on_checkpoint: Callable[[Checkpoint], None] | None = None) -> None:
        self.state_dir = state_dir
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(state_dir, 0o700)
            (state_dir / OBJECTS_DIR).mkdir(mode=0o700, exist_ok=True)
            (state_dir / CORPUS_DIR).mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot prepare state directory {state_dir}: {exc}") from exc
        self._lock_fd: int | None = _take_lock(state_dir / LOCK_FILE)
        try:
            self.store = VersionStore(state_dir)
            self.state = StateStore(state_dir, clock)
            self.removed_temps = (self.state.remove_temps() + self.store.remove_temps()
                                  + remove_corpus_temps(state_dir / CORPUS_DIR))
            self.store.ensure_format()
            self.audit = AuditLog(state_dir / AUDIT_FILE, clock, anchor, on_checkpoint)
        except BaseException:
            self._release()
            raise

    @property
    def corpus_dir(self) -> Path:
        return self.state_dir / CORPUS_DIR

    def add_version(self, version: Version) -> State:
        """Store ``version``'s source, then record its metadata; return the new state."""
        self.store.put_source(version.source)
        return self.state.update(lambda state: with_version(state, version))

    def restore_plan(self, current_base_sha: Callable[[str], str | None]) -> list[RestoreDecision]:
        """What to do with each active version at start; decides only, changes nothing.

        ``current_base_sha(target)`` is the sha256 of the target's source as
        loaded now, or None when the target no longer resolves.
        """
        return plan_restore(self.state.load(), self.store.get_source, current_base_sha)

    def close(self) -> None:
        """Close the audit log and release the directory."""
        self.audit.close()
        self._release()

    def __enter__(self) -> Snapshots:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None


def _take_lock(path: Path) -> int:
    """An exclusive, non-blocking flock on ``path``, holding our pid; StateDirLocked if taken."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StateError(f"cannot open {path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip() or "unknown"
        os.close(fd)
        raise StateDirLocked(
            f"{path.parent} is in use by another selfmod process (pid {holder}); stop it, "
            "or give this one its own --state-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


__all__ = [
    "AUDIT_FILE",
    "CORPUS_DIR",
    "CRASH_POINTS",
    "LOCK_FILE",
    "Anchor",
    "AnchorError",
    "AuditError",
    "AuditLog",
    "AuditRecord",
    "AuditRefused",
    "AuditTampered",
    "Checkpoint",
    "IntegrityError",
    "ObjectMissing",
    "RestoreAction",
    "RestoreDecision",
    "SnapshotError",
    "Snapshots",
    "State",
    "StateDirLocked",
    "StateError",
    "StateStore",
    "UnknownVersion",
    "VerifyResult",
    "Version",
    "VersionConflict",
    "VersionRecord",
    "VersionStatus",
    "VersionStore",
    "activate",
    "crash_point",
    "credential_key_path",
    "deactivate",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "mark",
    "plan_restore",
    "read_records",
    "source_sha",
    "verify_chain",
    "verify_file",
    "with_version",
]
