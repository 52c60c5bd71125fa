"""The audit chain as values: the record format, its hash, and the pure check of a log's lines.

No I/O here: :mod:`snapshots.audit` reads and writes the file, and
:mod:`snapshots.checkpoint` supplies the signed checkpoints a check can be
anchored to. A check is given the lines and, when anchored, what the
checkpoints vouch for (``{seq: hash}``); it returns a :class:`VerifyResult`.

What the chain alone catches: a flipped byte, an edited, deleted, inserted or
moved record, named by seq. What it cannot catch, because the file is its own
only witness: a cut at a line boundary at the end, and any rewrite that
recomputes every later hash. Checkpoints catch those: a log shorter than a
checkpoint's seq was cut, and a record whose hash differs from the one signed
for its seq was rewritten. Between two checkpoints the chain only says *that*
something changed, so a rewrite is named by the first record no earlier
checkpoint vouches for, and the range it lies in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import AuditError

# History of AUDIT_FORMAT:
#   1 — first format: {v, seq, ts, prev, kind, body, hash}; hash over canonical JSON
#       of the other six fields; seq from 1; prev of the first record is 64 zeros.
AUDIT_FORMAT = 1
GENESIS = "0" * 64
FIELDS = ("v", "seq", "ts", "prev", "kind", "body", "hash")


def canonical_json(obj: Any) -> str:
    """The one serialisation hashes and signatures are computed over."""
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


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify_chain` found.

    ``ok`` means no sign of tampering (a torn tail alone is a crash, so it is
    ok, with ``torn_tail`` set). ``records`` counts the records that can be
    trusted from the start. ``first_bad_seq`` is the first record that cannot:
    where the chain breaks, where a cut log ends, or, for a rewrite only a
    checkpoint shows, the first record after the last checkpoint that agrees.

    ``anchored`` says whether signed checkpoints took part; ``checkpoints``
    counts the seqs they vouch for and ``last_checkpoint_seq`` is the highest.
    """

    ok: bool
    records: int
    first_bad_seq: int | None = None
    problem: str = ""
    torn_tail: bool = False
    anchored: bool = False
    checkpoints: int = 0
    last_checkpoint_seq: int | None = None

    @property
    def anchor(self) -> str:
        """``anchored: N checkpoints, last at seq S`` or ``unanchored``, for operators."""
        if not self.anchored:
            return "unanchored"
        if self.last_checkpoint_seq is None:
            return "anchored: 0 checkpoints yet"
        return f"anchored: {self.checkpoints} checkpoints, last at seq {self.last_checkpoint_seq}"


def parse_line(line: str) -> dict[str, Any] | None:
    """The JSON object on ``line``, or None when it is not one."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


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


class _Vouched:
    """The checkpoints' view during one walk: which seqs they vouch for, and which agreed."""

    def __init__(self, vouched: Mapping[int, str]) -> None:
        self.vouched = vouched
        self.last = max(vouched, default=0)
        self.agreed = 0  # the highest checkpointed seq seen to agree so far

    def result(self, ok: bool, records: int, **rest: Any) -> VerifyResult:
        return VerifyResult(ok=ok, records=records, anchored=True, checkpoints=len(self.vouched),
                            last_checkpoint_seq=self.last or None, **rest)

    def mismatch(self, seq: int, digest: str) -> VerifyResult | None:
        """A failure when record ``seq`` hashes otherwise than its checkpoint says."""
        signed = self.vouched.get(seq)
        if signed is None:
            return None
        if signed == digest:
            self.agreed = seq
            return None
        first = self.agreed + 1
        return self.result(
            False, self.agreed, first_bad_seq=first,
            problem=f"record {seq} hashes to {digest[:16]}…, but its signed checkpoint says "
                    f"{signed[:16]}…: records were rewritten, deleted or inserted and the chain "
                    f"recomputed, somewhere in seq {first}..{seq} (checkpoints before it agree)")

    def cut(self, count: int, torn: bool) -> VerifyResult | None:
        """A failure when a checkpoint vouches for a record past the end of the log.

        Records after the last checkpoint the log agrees with are named too:
        a cut cannot be told from a delete that renumbered the records after it.
        """
        if self.last <= count:
            return None
        how = ("the torn last line is not a crash: a checkpoint was signed after that record "
               "was written in full" if torn else "records were removed from the end")
        first = self.agreed + 1
        where = ("" if first > count else
                 f" (or rewritten from seq {first} on, the first record after the last "
                 "checkpoint the log agrees with)")
        return self.result(
            False, self.agreed, first_bad_seq=first,
            problem=f"the log ends after record {count}, but a signed checkpoint vouches for "
                    f"record {self.last}: {how}{where}")


def verify_chain(lines: Iterable[str], vouched: Mapping[int, str] | None = None) -> VerifyResult:
    """Check a log given as its lines, each with its trailing newline as read from the file.

    Unanchored (``vouched`` None), only the last line may be torn (no
    newline, or not a JSON object); that is reported as ``torn_tail`` with
    ``ok`` true. Anchored, a torn last line is a crash only when it has no
    newline, does not parse as a whole object (a crash leaves a prefix of the
    right line, and no proper prefix of an object parses) or is the right
    record, and no checkpoint vouches for it or anything after it. Anything
    else wrong stops the check at the first bad record.
    """
    anchor = None if vouched is None else _Vouched(vouched)
    seq, prev, count = 1, GENESIS, 0

    def fail(first: int, problem: str, trusted: int) -> VerifyResult:
        if anchor is None:
            return VerifyResult(ok=False, records=trusted, first_bad_seq=first, problem=problem)
        return anchor.result(False, trusted, first_bad_seq=first, problem=problem)

    for line, fields, torn in _entries(lines):
        if torn and line:
            if anchor is not None:
                if line.endswith("\n"):
                    return fail(seq, f"record {seq}: the last line ends in a newline but is not "
                                     "a record; a crash leaves a line without its newline", count)
                if fields is not None and _record_problem(fields, seq, prev):
                    return fail(seq, f"record {seq}: the last line lacks its newline but is a "
                                     "whole JSON object that is not the next record; a crash "
                                     "leaves a prefix of the right record", count)
                cut = anchor.cut(count, torn=True)
                if cut is not None:
                    return cut
            size = len(line.encode("utf-8"))
            problem = (f"last line is torn ({size} bytes after record {seq - 1}): a crash "
                       "mid-write, repaired when the daemon next opens the log")
            if anchor is None:
                return VerifyResult(ok=True, records=count, torn_tail=True, problem=problem)
            return anchor.result(True, count, torn_tail=True, problem=problem)
        if torn:
            break
        if fields is None:
            return fail(seq, f"record {seq}: line is not a JSON object", count)
        problem = _record_problem(fields, seq, prev)
        if problem:
            return fail(seq, f"record {seq}: {problem}", count)
        if anchor is not None:
            mismatch = anchor.mismatch(seq, fields["hash"])
            if mismatch is not None:
                return mismatch
        seq, prev, count = seq + 1, fields["hash"], count + 1
    if anchor is None:
        return VerifyResult(ok=True, records=count)
    return anchor.cut(count, torn=False) or anchor.result(True, count)


def _entries(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any] | None, bool]]:
    """Each line with its parsed fields and whether it is a torn tail.

    Only the last line can be torn: it has no newline, or it is not a JSON
    object. Knowing that needs one line of look-ahead, kept here for every reader.
    """
    iterator = iter(lines)
    line = next(iterator, None)
    while line is not None:
        following = next(iterator, None)
        fields = parse_line(line)
        yield line, fields, following is None and (fields is None or not line.endswith("\n"))
        line = following
