"""Signed checkpoints of the audit chain's head, kept in a file outside the state directory.

A checkpoint says "record ``seq`` of this log hashes to ``hash``", signed with
the daemon's Ed25519 key (:mod:`snapshots.keys`). Because each record's hash
covers the one before it, a checkpoint vouches for the whole chain up to its
seq. The chain alone cannot show a cut at the end or a rewrite that recomputed
every hash; a signed checkpoint the rewriter cannot forge does (see
:mod:`snapshots.chain`).

The file holds one JSON line per checkpoint, ``{"v", "seq", "hash", "ts",
"key", "sig"}``: ``key`` is the signer's fingerprint and ``sig`` the hex
signature over the canonical JSON of the other five fields. It lives outside
the state directory (:class:`Anchor` refuses otherwise), so the shadow and a
writer of the state directory cannot rewrite the log and its witness together.
Lines are appended with one write on an O_APPEND descriptor and fsynced, after
the record they vouch for is fsynced; a crash can only leave a torn last line,
which is ignored and cut off by the next writer. Any other line that is not a
checkpoint signed by the configured key, or a checkpoint that goes back on an
earlier one, is tampering.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._atomic import fsync_dir
from .chain import canonical_json, parse_line
from .errors import AnchorError
from .keys import key_id

# History of CHECKPOINT_FORMAT:
#   1 — first format: {v, seq, hash, ts, key, sig}; sig is Ed25519 over the canonical JSON
#       of the other five fields, in hex; key is the first 16 hex of sha256(raw public key).
CHECKPOINT_FORMAT = 1
CHECKPOINT_FIELDS = ("v", "seq", "hash", "ts", "key", "sig")
CHECKPOINT_FILE = "checkpoints"
DEFAULT_EVERY = 16


def default_checkpoint_path(state_dir: Path) -> Path:
    """``<state_dir>-anchor/checkpoints`` beside the state directory, never inside it.

    ``/var/lib/selfmod`` gives ``/var/lib/selfmod-anchor/checkpoints`` (a second
    ``StateDirectory=`` under systemd), ``./.selfmod`` gives ``./.selfmod-anchor/checkpoints``.
    """
    absolute = state_dir.resolve()
    return absolute.parent / f"{absolute.name}-anchor" / CHECKPOINT_FILE


@dataclass(frozen=True)
class Anchor:
    """Where the audit log is anchored: the signing key, the checkpoint file, how often.

    ``every`` is the number of records between checkpoints (one is also written
    when the log is opened and closed). Records after the last checkpoint can
    be cut without a trace, so a smaller ``every`` narrows that window at the
    cost of one signature and one fsync per checkpoint.
    """

    key: Path
    checkpoints: Path
    every: int = DEFAULT_EVERY

    def __post_init__(self) -> None:
        if self.every < 1:
            raise AnchorError(f"checkpoints are written every N records with N >= 1, "
                              f"not {self.every}")

    def check_outside(self, state_dir: Path) -> None:
        """AnchorError unless the key and the checkpoint file live outside ``state_dir``."""
        inside = state_dir.resolve()
        for what, path in (("signing key", self.key), ("checkpoint file", self.checkpoints)):
            if path.resolve().is_relative_to(inside):
                raise AnchorError(
                    f"the audit {what} {path} is inside the state directory {state_dir}, where "
                    "whoever can rewrite the log could rewrite it too; put it elsewhere (for "
                    "example /var/lib/selfmod-anchor/ and a LoadCredential= for the key)")


@dataclass(frozen=True)
class Checkpoint:
    """One signed line of the checkpoint file."""

    v: int
    seq: int
    hash: str
    ts: float
    key: str
    sig: str

    def line(self) -> str:
        """The checkpoint as written: fields in the documented order, then a newline."""
        fields = {name: getattr(self, name) for name in CHECKPOINT_FIELDS}
        return json.dumps(fields, separators=(",", ":"), allow_nan=False) + "\n"


def _signed_bytes(fields: dict[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in fields.items() if k != "sig"}).encode("utf-8")


def sign_checkpoint(private_key: Ed25519PrivateKey, seq: int, digest: str, ts: float) -> Checkpoint:
    """The checkpoint vouching that record ``seq`` hashes to ``digest``."""
    fields: dict[str, Any] = {"v": CHECKPOINT_FORMAT, "seq": seq, "hash": digest,
                              "ts": float(ts), "key": key_id(private_key.public_key())}
    return Checkpoint(**fields, sig=private_key.sign(_signed_bytes(fields)).hex())


def checkpoint_problem(fields: dict[str, Any], public_key: Ed25519PublicKey) -> str:
    """Why ``fields`` is not a checkpoint signed by ``public_key``; "" if it is."""
    if set(fields) != set(CHECKPOINT_FIELDS):
        return f"fields are {sorted(fields)}, expected {sorted(CHECKPOINT_FIELDS)}"
    if fields["v"] != CHECKPOINT_FORMAT:
        return f"format v={fields['v']!r}, this selfmod reads v={CHECKPOINT_FORMAT}"
    seq, digest, sig = fields["seq"], fields["hash"], fields["sig"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return f"seq {seq!r} is not a positive integer"
    if not (isinstance(digest, str) and isinstance(sig, str)
            and isinstance(fields["ts"], int | float)):
        return "hash, sig or ts has the wrong type"
    if fields["key"] != key_id(public_key):
        return (f"signed by key {fields['key']!r}, not by the configured key "
                f"{key_id(public_key)!r} (a forged line, or the key was changed)")
    try:
        public_key.verify(bytes.fromhex(sig), _signed_bytes(fields))
    except (ValueError, InvalidSignature):
        return "the signature does not verify: a forged or edited checkpoint"
    return ""


@dataclass(frozen=True)
class Checkpoints:
    """What a checkpoint file vouches for.

    ``vouched`` maps each checkpointed seq to its hash. When ``problem`` is
    set the file was tampered with and ``vouched`` holds the good checkpoints
    before the bad line. ``complete_bytes`` is the length of the file without a
    torn last line (``torn`` says whether there was one).
    """

    vouched: dict[int, str] = field(default_factory=dict)
    lines: int = 0
    problem: str = ""
    torn: bool = False
    complete_bytes: int = 0

    @property
    def last_seq(self) -> int:
        return max(self.vouched, default=0)


def parse_checkpoints(lines: Iterable[str], public_key: Ed25519PublicKey) -> Checkpoints:
    """Check a checkpoint file given as its lines (each with its newline as read)."""
    vouched: dict[int, str] = {}
    size, count, last = 0, 0, 0
    for count, line in enumerate(lines, start=1):
        if not line.endswith("\n"):
            return Checkpoints(vouched, count - 1, torn=True, complete_bytes=size)
        fields = parse_line(line)
        problem = "not a JSON object" if fields is None else checkpoint_problem(fields, public_key)
        if not problem and fields is not None:
            seq, digest = fields["seq"], fields["hash"]
            if seq < last:
                problem = f"seq {seq} after a checkpoint of seq {last}: lines were moved"
            elif vouched.get(seq, digest) != digest:
                problem = (f"seq {seq} signed with a second hash: the log was rewritten and "
                           "re-signed, or two logs share this checkpoint file")
            else:
                vouched[seq], last = digest, seq
        if problem:
            return Checkpoints(vouched, count, problem=f"checkpoint line {count}: {problem}",
                               complete_bytes=size)
        size += len(line.encode("utf-8"))
    return Checkpoints(vouched, count, complete_bytes=size)


def read_checkpoints(path: Path, public_key: Ed25519PublicKey) -> Checkpoints:
    """:func:`parse_checkpoints` over the file at ``path``; a missing file vouches for nothing."""
    try:
        return parse_checkpoints(_lines(path), public_key)
    except FileNotFoundError:
        return Checkpoints()
    except OSError as exc:
        raise AnchorError(f"cannot read the checkpoint file {path}: {exc}") from exc


def _lines(path: Path) -> Iterator[str]:
    with open(path, "rb") as fh:
        for raw in fh:
            yield raw.decode("utf-8", errors="replace")


class CheckpointWriter:
    """The appending end of a checkpoint file that :func:`read_checkpoints` found sound.

    Opening cuts off a torn last line (a crash mid-append). Not thread-safe on
    its own: :class:`snapshots.audit.AuditLog` calls it under its lock.
    """

    def __init__(self, path: Path, private_key: Ed25519PrivateKey, found: Checkpoints) -> None:
        self.path = path
        self._key = private_key
        self.last_seq = found.last_seq
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            existed = path.exists()
            self._fd: int | None = os.open(
                path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            if not existed:
                fsync_dir(path.parent)
            if found.torn:
                os.ftruncate(self._fd, found.complete_bytes)
                os.fsync(self._fd)
        except OSError as exc:
            self.close()
            raise AnchorError(f"cannot open the checkpoint file {path} for appending: {exc}; "
                              "the daemon needs write access to it") from exc

    def write(self, seq: int, digest: str, ts: float) -> Checkpoint:
        """Sign and durably append the checkpoint of record ``seq``."""
        if self._fd is None:
            raise AnchorError(f"{self.path} is closed")
        checkpoint = sign_checkpoint(self._key, seq, digest, ts)
        data = checkpoint.line().encode("utf-8")
        size = os.fstat(self._fd).st_size
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(f"short write: {written} of {len(data)} bytes")
            os.fsync(self._fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, size)
            raise AnchorError(f"cannot append a checkpoint to {self.path}: {exc}") from exc
        self.last_seq = seq
        return checkpoint

    def close(self) -> None:
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)
