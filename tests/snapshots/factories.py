"""Small builders shared by the snapshots tests."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from snapshots import Anchor, AuditLog, Version, generate_keypair, source_sha
from snapshots.audit import GENESIS, make_record

TARGET = "shop.cart:total"
SOURCE = "def total(xs):\n    return sum(xs)\n"
BASE_SOURCE = "def total(xs):\n    t = 0\n    for x in xs:\n        t += x\n    return t\n"
BASE = source_sha(BASE_SOURCE)


def make_version(
    source: str = SOURCE,
    *,
    target: str = TARGET,
    base_sha: str = BASE,
    created_at: float = 10.0,
    parent: str | None = None,
    evidence: Mapping[str, Any] | None = None,
) -> Version:
    """A proposed version of ``target`` made by a rule."""
    return Version.create(target=target, base_sha=base_sha, source=source,
                          origin="rules:sum-loop", created_at=created_at, parent=parent,
                          evidence=evidence)


def chain_lines(count: int) -> list[str]:
    """The lines of a valid log of ``count`` records, built in memory."""
    lines, prev = [], GENESIS
    for seq in range(1, count + 1):
        record = make_record(seq, prev, 1000.0 + seq, "note", {"n": seq, "text": f"record {seq}"})
        lines.append(record.line())
        prev = record.hash
    return lines


def make_anchor(root: Path, every: int = 8) -> Anchor:
    """A fresh key pair under ``root/keys`` and an anchor writing to ``root/anchor/checkpoints``."""
    private, _ = generate_keypair(root / "keys")
    return Anchor(private, root / "anchor" / "checkpoints", every=every)


def public_key_path(anchor: Anchor) -> Path:
    """The public half that :func:`make_anchor` wrote beside the signing key."""
    return anchor.key.with_suffix(".pub")


def write_anchored_log(path: Path, anchor: Anchor, count: int) -> None:
    """An anchored log of ``count`` note records at ``path``, closed (so its head is signed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with AuditLog(path, clock=lambda: 1000.0, anchor=anchor) as log:
        for n in range(1, count + 1):
            log.append("note", {"n": n, "text": f"record {n}"})
