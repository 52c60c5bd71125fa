"""Why a candidate was turned down, in one value whatever the stage that said no.

Every stage that judges a candidate returns :class:`Rejected` instead of
raising: the static gate (with the line and column it objects to), the shadow
and the acceptance statistics. ``reason`` is a short, stable label fit for a
metric; ``detail`` is the sentence for people and for a proposer's
self-correction. It lives in the lowest layer that judges, so the envelope's
gate and the checks share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    """Where a candidate was turned down, in the order a candidate meets them."""

    PARSE = "parse"  # the proposer's answer did not yield a usable function
    STATIC = "static"  # the static gate
    SHADOW = "shadow"  # replay, property checks, declared invariants in the jail
    ACCEPT = "accept"  # the statistics: not faster, or too little evidence
    SWAP = "swap"  # the live code changed, or the version would not install
    CANARY = "canary"  # live traffic showed a regression


@dataclass(frozen=True)
class Rejected:
    """The candidate was turned down at ``stage`` for ``reason``; ``detail`` says how.

    ``str()`` gives the whole message, e.g. ``static/import at line 2, col 5:
    import of 'os' is not allowed``; ``line`` and ``col`` (1-based) are set by the
    static gate only.
    """

    stage: Stage
    reason: str
    detail: str = ""
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        where = f" at line {self.line}, col {self.col}" if self.line is not None else ""
        return f"{self.stage}/{self.reason}{where}: {self.detail}"
