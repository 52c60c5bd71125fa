"""The audit log: one JSON line per decision, each chained to the one before by its hash.

Why JSON lines: a record is appended with one write and never rewritten, an
operator can read the file with ``less``, ``grep`` and ``jq``, and a crash can
damage at most the last line, which is easy to tell from damage elsewhere.

Why an fsync per record: records are rare (a handful per synthesis cycle, one
per swap or rollback), and a decision the daemon acted on must not vanish with
the page cache. Durability wins over throughput here.

Each line is ``{"v", "seq", "ts", "prev", "kind", "body", "hash"}``: ``seq``
counts from 1, ``prev`` is the previous record's hash (64 zeros for the first)
and ``hash`` is the sha256 of the canonical JSON of all the other fields
(:func:`canonical_json`). Editing, deleting, moving or inserting a record breaks
the chain at that point, unless whoever did it also recomputed every later hash:
an unanchored chain proves order and detects careless edits, it cannot stop an
attacker who can rewrite the whole file, or one who cuts records off the end.
The remedy is an :class:`~snapshots.checkpoint.Anchor`: signed checkpoints of
the head in a file outside the state directory (:mod:`snapshots.checkpoint`),
against which the log is checked on open; the writer refuses to append to a
log that fails (AuditRefused), and writes nothing, not even a repair.

Crash or tamper: a record is written with a single ``write`` on an O_APPEND
descriptor, so a crash mid-write can only leave a *prefix* of the last line,
which lacks its newline (or, on some file systems after power loss, is not
JSON). Only the last line can be torn; any bad line before it, and any last
line that parses but does not verify, is tampering. Anchored, a torn line must
also lack its newline and no checkpoint may vouch for it (checkpoints are
written only after their record is fsynced). :func:`verify_chain`
reports the two apart, and :class:`AuditLog` repairs a torn tail when it
opens the log: it truncates the torn bytes and appends an ``audit_repaired``
record with their length, hash and first bytes, so the repair is itself on the
record. A crash between the truncation and that record loses the note, never
the chain.

One process writes the log (the daemon, holding the state directory's lock);
others read it with :func:`verify_file` and :func:`read_records`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import crash
from .chain import (
    AUDIT_FORMAT,
    FIELDS,
    GENESIS,
    AuditRecord,
    VerifyResult,
    _entries,
    canonical_json,
    make_record,
    parse_line,
    record_hash,
    verify_chain,
)
from .checkpoint import Anchor, Checkpoint, Checkpoints, CheckpointWriter, read_checkpoints
from .errors import AuditError, AuditRefused, AuditTampered
from .keys import load_private_key

__all__ = [  # the record format lives in snapshots.chain; these names stay importable from here
    "AUDIT_FORMAT",
    "FIELDS",
    "GENESIS",
    "REPAIRED_KIND",
    "Anchor",
    "AuditLog",
    "AuditRecord",
    "Checkpoint",
    "VerifyResult",
    "canonical_json",
    "make_record",
    "read_records",
    "record_hash",
    "verify_chain",
    "verify_file",
]

REPAIRED_KIND = "audit_repaired"
_TAIL_CHUNK = 64 * 1024
_DROPPED_SHOWN = 256


def _parse_bytes(line: bytes) -> dict[str, Any] | None:
    return parse_line(line.decode("utf-8", errors="replace"))


# -- reading -----------------------------------------------------------------------------------


def _file_lines(path: Path) -> Iterator[str]:
    with open(path, "rb") as fh:
        for raw in fh:
            yield raw.decode("utf-8", errors="replace")


def verify_file(path: Path, checkpoints: Path | None = None,
                public_key: Ed25519PublicKey | None = None) -> VerifyResult:
    """Check the log at ``path``; a missing file is an empty, intact log.

    Given the checkpoint file and the key that signed it (both or neither),
    the check is anchored (:func:`verify_chain`); a line of the checkpoint
    file that is not a checkpoint signed by that key is tampering, reported at
    the first record no good checkpoint before it vouches for.
    """
    if (checkpoints is None) != (public_key is None):
        raise ValueError("an anchored check needs both the checkpoint file and the public key")
    if checkpoints is None or public_key is None:
        return _verify_lines(path, None)
    return _verify_anchored(path, checkpoints, read_checkpoints(checkpoints, public_key))


def _verify_lines(path: Path, vouched: Mapping[int, str] | None) -> VerifyResult:
    try:
        return verify_chain(_file_lines(path), vouched)
    except FileNotFoundError:
        return verify_chain([], vouched)
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc}") from exc


def _verify_anchored(path: Path, checkpoints: Path, found: Checkpoints) -> VerifyResult:
    """The log checked against the good checkpoints, and the first bad checkpoint line if any."""
    result = _verify_lines(path, found.vouched)
    if not found.problem:
        return result
    first = found.last_seq + 1
    if result.first_bad_seq is not None and result.first_bad_seq <= first:
        return result
    return replace(result, ok=False, records=min(result.records, first - 1), first_bad_seq=first,
                   torn_tail=False,
                   problem=f"{checkpoints}: {found.problem}; records from seq {first} on are "
                           "vouched for by no good checkpoint")


def read_records(path: Path, kinds: Iterable[str] | None = None) -> Iterator[AuditRecord]:
    """The records of the log at ``path`` in order, optionally only those of ``kinds``.

    Hashes are not checked (that is :func:`verify_file`'s job); a torn last
    line is skipped, and a line that is not a record before it raises AuditTampered.
    """
    wanted = None if kinds is None else frozenset(kinds)
    try:
        for position, (_, fields, torn) in enumerate(_entries(_file_lines(path)), start=1):
            if torn:
                return
            if fields is None or set(fields) != set(FIELDS):
                raise AuditTampered(f"{path}: line {position} is not an audit record", position)
            if wanted is None or fields["kind"] in wanted:
                yield AuditRecord(**fields)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc}") from exc


# -- the writer --------------------------------------------------------------------------------


class AuditLog:
    """The appending end of the log at ``path``: continues its chain, repairing a torn tail.

    Opening creates the file (mode 0600) if needed. ``repaired`` is the
    ``audit_repaired`` record written on open, or None.

    With an ``anchor`` the log is checked against its signed checkpoints
    before anything is written; when that fails, AuditRefused names the first
    bad seq and nothing is written, not even a repair. A checkpoint of the
    head is written after opening, every ``anchor.every`` records and at close;
    ``on_checkpoint`` is then called with it (under the log's lock, so it must
    not call back into the log), for copies where the state directory's
    writers cannot reach: the journal, a metric of the head seq.
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.time,
                 anchor: Anchor | None = None,
                 on_checkpoint: Callable[[Checkpoint], None] | None = None) -> None:
        self.path = path
        self.anchor = anchor
        self._on_checkpoint = on_checkpoint
        self._clock = clock
        self._lock = threading.Lock()
        self._seq, self._prev, self._size = 0, GENESIS, 0
        self._checkpoints: CheckpointWriter | None = None
        self._public_key: Ed25519PublicKey | None = None
        self._fd: int | None = None
        try:
            if anchor is not None:  # before the open, which would create a deleted log anew
                self._checkpoints = self._check_anchor(anchor)
            try:
                self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                                   0o600)
            except OSError as exc:
                raise AuditError(f"cannot open {path}: {exc}") from exc
            self.repaired = self._recover()
            self._checkpoint()
        except BaseException:
            self._close_files()
            raise

    @property
    def head(self) -> tuple[int, str]:
        """The last record's seq and hash (0 and 64 zeros for an empty log)."""
        with self._lock:
            return self._seq, self._prev

    @property
    def checkpointed(self) -> int | None:
        """The seq of the last checkpoint written or found, or None when unanchored."""
        with self._lock:
            return None if self._checkpoints is None else self._checkpoints.last_seq

    def append(self, kind: str, body: Mapping[str, Any]) -> AuditRecord:
        """Append one record and fsync it, then a checkpoint when one is due; thread-safe.

        Should the checkpoint fail (AnchorError), the record is already
        stored; the next append or close tries the checkpoint again.
        """
        if not kind:
            raise ValueError("an audit record needs a kind")
        with self._lock:
            record = make_record(self._seq + 1, self._prev, self._clock(), kind, body)
            self._write(record.line().encode("utf-8"))
            self._seq, self._prev = record.seq, record.hash
            if (self.anchor is not None and self._checkpoints is not None
                    and self._seq - self._checkpoints.last_seq >= self.anchor.every):
                self._checkpoint()
            return record

    def verify(self) -> VerifyResult:
        """:func:`verify_file` over this log (anchored if it is), with appends held off."""
        with self._lock:
            if self.anchor is None or self._public_key is None:
                return verify_file(self.path)
            return verify_file(self.path, self.anchor.checkpoints, self._public_key)

    def records(self, kinds: Iterable[str] | None = None) -> list[AuditRecord]:
        """The records in order, optionally only those whose kind is in ``kinds``."""
        with self._lock:
            return list(read_records(self.path, kinds))

    def close(self) -> None:
        """Write the closing checkpoint (when anchored) and close the files."""
        with self._lock:
            try:
                if self._fd is not None:
                    self._checkpoint()
            finally:
                self._close_files()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _close_files(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _check_anchor(self, anchor: Anchor) -> CheckpointWriter:
        """Check the log against its checkpoints; if that fails, AuditRefused, nothing written."""
        anchor.check_outside(self.path.parent)
        private_key = load_private_key(anchor.key)
        self._public_key = private_key.public_key()
        found = read_checkpoints(anchor.checkpoints, self._public_key)
        result = _verify_anchored(self.path, anchor.checkpoints, found)
        if not result.ok:
            assert result.first_bad_seq is not None
            raise AuditRefused(
                f"refusing to append to {self.path}: it fails its check against the signed "
                f"checkpoints in {anchor.checkpoints} at seq {result.first_bad_seq}: "
                f"{result.problem}. Nothing was written. Run `selfmod audit verify "
                "--public-key KEY.pub --checkpoints FILE` and investigate from that seq; to "
                "start a new chain, move the log and the checkpoint file aside (keep both as "
                "evidence) and start again", result.first_bad_seq)
        return CheckpointWriter(anchor.checkpoints, private_key, found)

    def _checkpoint(self) -> None:
        """Sign the head into the checkpoint file, unless unanchored or already done."""
        writer = self._checkpoints
        if writer is not None and self._seq > writer.last_seq:
            checkpoint = writer.write(self._seq, self._prev, self._clock())
            if self._on_checkpoint is not None:
                self._on_checkpoint(checkpoint)

    def _write(self, data: bytes) -> None:
        fd = self._fd
        if fd is None:
            raise AuditError(f"{self.path} is closed")
        if crash.armed("audit.torn_write"):
            os.write(fd, data[: len(data) // 2])
            crash.crash_point("audit.torn_write")
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write: {written} of {len(data)} bytes")
            crash.crash_point("audit.written")
            os.fsync(fd)
        except OSError as exc:
            # Take back whatever part of the line made it, so the next record
            # does not follow a torn one (which would read as tampering).
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._size)
            raise AuditError(f"cannot append to {self.path}: {exc}") from exc
        crash.crash_point("audit.synced")
        self._size += len(data)

    def _recover(self) -> AuditRecord | None:
        """Find the chain's head from the tail of the file, cutting off a torn last line."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        complete, fragment = _read_tail(self._fd, size)
        # A crash tears one line: either bytes without a newline, or a last
        # complete line that is not JSON; never both, never two lines.
        dropped = fragment
        if not fragment and complete and _parse_bytes(complete[-1]) is None:
            dropped = complete.pop() + b"\n"
        fields = _parse_bytes(complete[-1]) if complete else None
        if complete and fields is None:
            raise AuditError(f"{self.path}: the last two lines are not records, which a crash "
                             "cannot cause; run `selfmod audit verify` and move the log aside")
        if fields is None:
            self._seq, self._prev = 0, GENESIS
        else:
            seq, digest = fields.get("seq"), fields.get("hash")
            if not isinstance(seq, int) or not isinstance(digest, str):
                raise AuditError(f"{self.path}: the last record has no seq or hash; run "
                                 "`selfmod audit verify` and move the log aside")
            self._seq, self._prev = seq, digest
        self._size = size - len(dropped)
        if not dropped:
            return None
        try:
            os.ftruncate(self._fd, self._size)
            os.fsync(self._fd)
        except OSError as exc:
            raise AuditError(f"cannot repair the torn tail of {self.path}: {exc}") from exc
        crash.crash_point("audit.repair_truncated")
        body = {
            "after_seq": self._seq,
            "dropped_bytes": len(dropped),
            "dropped_sha256": hashlib.sha256(dropped).hexdigest(),
            "dropped_start": dropped[:_DROPPED_SHOWN].decode("utf-8", errors="replace"),
            "reason": "torn last line (a crash mid-write) cut off on open",
        }
        record = make_record(self._seq + 1, self._prev, self._clock(), REPAIRED_KIND, body)
        self._write(record.line().encode("utf-8"))
        self._seq, self._prev = record.seq, record.hash
        return record


def _read_tail(fd: int, size: int) -> tuple[list[bytes], bytes]:
    """The last (up to) two complete lines, without newlines, and the bytes after the last newline.

    Reads backwards in growing chunks, so opening a long log costs a read of its tail.
    """
    chunk = _TAIL_CHUNK
    while True:
        start = max(0, size - chunk)
        data = os.pread(fd, size - start, start)
        pieces = data.split(b"\n")
        fragment, complete = pieces[-1], pieces[:-1]
        if start > 0:
            complete = complete[1:]  # the first piece may begin mid-line
        if start == 0 or len(complete) >= 2:
            return complete[-2:], fragment
        chunk *= 4
