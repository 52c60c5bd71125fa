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
attacker who can rewrite the whole file. Keeping the head hash elsewhere is the
remedy for that.

Crash or tamper: a record is written with a single ``write`` on an O_APPEND
descriptor, so a crash mid-write can only leave a *prefix* of the last line,
which lacks its newline (or, on some file systems after power loss, is not
JSON). Only the last line can be torn; any bad line before it, and any last
line that parses but does not verify, is tampering. :func:`verify_chain`
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
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from . import crash
from .errors import AuditError, AuditTampered

# History of AUDIT_FORMAT:
#   1 — first format: {v, seq, ts, prev, kind, body, hash}; hash over canonical JSON
#       of the other six fields; seq from 1; prev of the first record is 64 zeros.
AUDIT_FORMAT = 1
GENESIS = "0" * 64
FIELDS = ("v", "seq", "ts", "prev", "kind", "body", "hash")
REPAIRED_KIND = "audit_repaired"
_TAIL_CHUNK = 64 * 1024
_DROPPED_SHOWN = 256


def canonical_json(obj: Any) -> str:
    """The one serialisation hashes are computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


@dataclass(frozen=True)
class AuditRecord:
    """One line of the audit log."""

    v: int
    seq: int
    ts: float
    prev: str
    kind: str
    body: Mapping[str, Any]
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}

    def line(self) -> str:
        """The record as written: fields in the documented order, then a newline."""
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False) + "\n"


def record_hash(fields: Mapping[str, Any]) -> str:
    """The sha256 of the canonical JSON of every field but ``hash``."""
    rest = {key: value for key, value in fields.items() if key != "hash"}
    return hashlib.sha256(canonical_json(rest).encode("utf-8")).hexdigest()


def make_record(seq: int, prev: str, ts: float, kind: str, body: Mapping[str, Any]) -> AuditRecord:
    """The record that follows ``prev`` as number ``seq``; AuditError if ``body`` is not JSON.

    The body is normalised through JSON first (tuples become lists, keys
    strings), so the record hashes the same after it is read back.
    """
    try:
        plain = json.loads(canonical_json(dict(body)))
    except (TypeError, ValueError) as exc:
        raise AuditError(f"audit body for {kind!r} is not plain JSON: {exc}") from exc
    fields = {"v": AUDIT_FORMAT, "seq": seq, "ts": float(ts), "prev": prev, "kind": kind,
              "body": plain}
    return AuditRecord(**fields, hash=record_hash(fields))


# -- verification (pure) -----------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify_chain` found.

    ``ok`` means no sign of tampering (a torn tail alone is a crash, so it is
    ok, with ``torn_tail`` set). ``records`` counts the records that form an
    intact chain from the start. ``first_bad_seq`` is the sequence number
    expected at the first place the chain fails: every record before it links.
    """

    ok: bool
    records: int
    first_bad_seq: int | None = None
    problem: str = ""
    torn_tail: bool = False


def _parse(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _parse_bytes(line: bytes) -> dict[str, Any] | None:
    return _parse(line.decode("utf-8", errors="replace"))


def _record_problem(fields: dict[str, Any], seq: int, prev: str) -> str:
    """Why ``fields`` is not the valid record number ``seq`` following ``prev``; "" if it is."""
    if set(fields) != set(FIELDS):
        return f"fields are {sorted(fields)}, expected {sorted(FIELDS)}"
    if fields["v"] != AUDIT_FORMAT:
        return f"format v={fields['v']!r}, this selfmod reads v={AUDIT_FORMAT}"
    found = fields["seq"]
    if not isinstance(found, int) or isinstance(found, bool):
        return f"seq {found!r} is not an integer"
    if found != seq:
        return f"expected seq {seq}, found {found}: a record was deleted, inserted or moved"
    if not (isinstance(fields["ts"], int | float) and isinstance(fields["kind"], str)
            and isinstance(fields["body"], dict)):
        return "ts, kind or body has the wrong type"
    try:
        actual = record_hash(fields)
    except (TypeError, ValueError) as exc:
        return f"record cannot be hashed: {exc}"
    if fields["hash"] != actual:
        return "hash does not match the record's content: the record was edited"
    if fields["prev"] != prev:
        return f"prev does not match the hash of record {seq - 1}: the chain was cut here"
    return ""


def verify_chain(lines: Iterable[str]) -> VerifyResult:
    """Check a log given as its lines, each with its trailing newline as read from the file.

    Only the last line may be torn (no newline, or not a JSON object); that
    is reported as ``torn_tail`` with ``ok`` true. Anything else wrong stops
    the check at the first bad record.
    """
    seq, prev, count = 1, GENESIS, 0
    for line, fields, torn in _entries(lines):
        if torn:
            if not line:
                break
            size = len(line.encode("utf-8"))
            return VerifyResult(
                ok=True, records=count, torn_tail=True,
                problem=f"last line is torn ({size} bytes after record {seq - 1}): a crash "
                        "mid-write, repaired when the daemon next opens the log")
        if fields is None:
            return VerifyResult(ok=False, records=count, first_bad_seq=seq,
                                problem=f"record {seq}: line is not a JSON object")
        problem = _record_problem(fields, seq, prev)
        if problem:
            return VerifyResult(ok=False, records=count, first_bad_seq=seq,
                                problem=f"record {seq}: {problem}")
        seq, prev, count = seq + 1, fields["hash"], count + 1
    return VerifyResult(ok=True, records=count)


def _entries(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any] | None, bool]]:
    """Each line with its parsed fields and whether it is a torn tail.

    Only the last line can be torn: it has no newline, or it is not a JSON
    object. Knowing that needs one line of look-ahead, kept here for every reader.
    """
    iterator = iter(lines)
    line = next(iterator, None)
    while line is not None:
        following = next(iterator, None)
        fields = _parse(line)
        yield line, fields, following is None and (fields is None or not line.endswith("\n"))
        line = following


def _file_lines(path: Path) -> Iterator[str]:
    with open(path, "rb") as fh:
        for raw in fh:
            yield raw.decode("utf-8", errors="replace")


def verify_file(path: Path) -> VerifyResult:
    """:func:`verify_chain` over the log at ``path``; a missing file is an empty, intact log."""
    try:
        return verify_chain(_file_lines(path))
    except FileNotFoundError:
        return VerifyResult(ok=True, records=0)
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc}") from exc


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
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._seq, self._prev, self._size = 0, GENESIS, 0
        try:
            self._fd: int | None = os.open(
                path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open {path}: {exc}") from exc
        try:
            self.repaired = self._recover()
        except BaseException:
            self.close()
            raise

    @property
    def head(self) -> tuple[int, str]:
        """The last record's seq and hash (0 and 64 zeros for an empty log)."""
        with self._lock:
            return self._seq, self._prev

    def append(self, kind: str, body: Mapping[str, Any]) -> AuditRecord:
        """Append one record and fsync it; safe to call from any thread."""
        if not kind:
            raise ValueError("an audit record needs a kind")
        with self._lock:
            record = make_record(self._seq + 1, self._prev, self._clock(), kind, body)
            self._write(record.line().encode("utf-8"))
            self._seq, self._prev = record.seq, record.hash
            return record

    def verify(self) -> VerifyResult:
        """:func:`verify_chain` over this log, with appends held off while it reads."""
        with self._lock:
            return verify_file(self.path)

    def records(self, kinds: Iterable[str] | None = None) -> list[AuditRecord]:
        """The records in order, optionally only those whose kind is in ``kinds``."""
        with self._lock:
            return list(read_records(self.path, kinds))

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

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
