"""Errors of the safety envelope, rooted in one class.

    EnvelopeError
     ├── PolicyError        a policy file cannot be used; names file, line, column
     │                      and what to change
     └── SandboxError       the sandbox is configured in a way it cannot run
          └── LimitsError   a SandboxLimits value is out of range (also a ValueError)

Stages of the envelope that judge candidates (the static gate, the shadow run)
do not raise: they return ``Allowed | Rejected`` values. Exceptions are kept for
what an operator or the host has to fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class EnvelopeError(Exception):
    """Base of every error the envelope raises."""


@dataclass(frozen=True)
class PolicyIssue:
    """One problem found in a policy file, located as precisely as the file allows.

    ``line`` and ``column`` are 1-based and ``None`` when the problem is with the
    file as a whole (missing, a symlink, world-writable). ``location`` is the dotted
    key path inside the policy (``acceptance.min_speedup``, ``scope.include[2]``),
    empty for the document itself.
    """

    source: str
    problem: str
    hint: str = ""
    line: int | None = None
    column: int | None = None
    location: str = ""

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        text = f"{where}: "
        if self.location:
            text += f"{self.location}: "
        text += self.problem
        if self.hint:
            text += f"; {self.hint}"
        return text


class PolicyError(EnvelopeError):
    """A policy file is missing, unsafe to read, malformed or invalid.

    The message is what an operator sees: the first issue as
    ``FILE:LINE:COLUMN: key.path: problem; what to change``, then any further
    issues, one per line. ``issues`` keeps them as values for tools.
    """

    def __init__(self, issues: Sequence[PolicyIssue]) -> None:
        if not issues:
            raise ValueError("PolicyError needs at least one issue")
        self.issues: tuple[PolicyIssue, ...] = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))

    @property
    def first(self) -> PolicyIssue:
        return self.issues[0]

    @property
    def source(self) -> str:
        return self.first.source

    @property
    def line(self) -> int | None:
        return self.first.line

    @property
    def column(self) -> int | None:
        return self.first.column

    @classmethod
    def single(cls, source: str, problem: str, hint: str = "", *, line: int | None = None,
               column: int | None = None, location: str = "") -> PolicyError:
        return cls([PolicyIssue(source, problem, hint, line, column, location)])


class SandboxError(EnvelopeError):
    """Base of the sandbox's configuration errors (a run itself never raises)."""


class LimitsError(SandboxError, ValueError):
    """A :class:`~envelope.sandbox.SandboxLimits` value is out of range; names the field."""
