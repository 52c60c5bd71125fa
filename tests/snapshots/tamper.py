"""What an attacker with write access to the state directory does to an audit log.

Each function takes the log's lines (with their newlines) and returns the
tampered lines, plus the seq of the first record it changed: the one an
anchored check must name when a checkpoint covers every record.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from snapshots.audit import GENESIS, record_hash

Tamper = Callable[[list[str], int], list[str]]


def rechain(lines: list[str], renumber: bool = False) -> list[str]:
    """Recompute every prev and hash (and, with ``renumber``, every seq): a careful forger."""
    out, prev = [], GENESIS
    for number, line in enumerate(lines, start=1):
        fields = json.loads(line)
        if renumber:
            fields["seq"] = number
        fields["prev"] = prev
        fields["hash"] = record_hash(fields)
        prev = fields["hash"]
        out.append(json.dumps(fields, separators=(",", ":")) + "\n")
    return out


def flip(lines: list[str], seq: int) -> list[str]:
    """One byte of record ``seq``'s body changed, nothing else."""
    out = list(lines)
    out[seq - 1] = out[seq - 1].replace('"n":', '"m":', 1)
    return out


def delete(lines: list[str], seq: int) -> list[str]:
    """Record ``seq`` removed at its line boundaries."""
    return lines[: seq - 1] + lines[seq:]


def swap(lines: list[str], seq: int) -> list[str]:
    """Records ``seq`` and ``seq + 1`` exchanged."""
    out = list(lines)
    out[seq - 1], out[seq] = out[seq], out[seq - 1]
    return out


def truncate(lines: list[str], seq: int) -> list[str]:
    """Every record from ``seq`` on cut off at a line boundary."""
    return lines[: seq - 1]


def disguised_torn_tail(lines: list[str], seq: int) -> list[str]:
    """The last record (``seq``) edited, rehashed, and its newline dropped to pass for a crash."""
    assert seq == len(lines)
    fields = json.loads(lines[-1])
    fields["body"] = {"by": "mallory"}
    fields["hash"] = record_hash(fields)
    return [*lines[:-1], json.dumps(fields, separators=(",", ":"))]


def careless_torn_tail(lines: list[str], seq: int) -> list[str]:
    """The last record (``seq``) edited without rehashing and its newline dropped."""
    assert seq == len(lines)
    return [*lines[:-1], flip(lines, seq)[-1].rstrip("\n")]


def recompute(lines: list[str], seq: int) -> list[str]:
    """Record ``seq``'s body rewritten and the whole chain recomputed after it."""
    out = list(lines)
    fields = json.loads(out[seq - 1])
    fields["body"] = {"by": "mallory"}
    out[seq - 1] = json.dumps(fields) + "\n"
    return rechain(out)


def renumber(lines: list[str], seq: int) -> list[str]:
    """Record ``seq`` deleted, the later ones renumbered and the chain recomputed."""
    return rechain(delete(lines, seq), renumber=True)


def truncate_and_refill(lines: list[str], seq: int) -> list[str]:
    """Records from ``seq`` on replaced by as many well-chained forgeries."""
    kept = lines[: seq - 1]
    forged = [json.dumps({**json.loads(line), "body": {"by": "mallory"}}) + "\n"
              for line in lines[seq - 1:]]
    return rechain(kept + forged)
