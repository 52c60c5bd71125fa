"""Small builders shared by the snapshots tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from snapshots import Version, source_sha
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
