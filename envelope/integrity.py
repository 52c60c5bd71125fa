"""Integrity: checksums of selfmod's own code and of the policy in force.

At start the monitor hashes every ``.py`` file of selfmod's packages (a hosted
app's files are the app's own business: the demo's oracle checks its copy's
hash itself) and remembers the policy's hash. It checks again every ``interval`` seconds; a
mismatch is reported once per file through ``on_violation`` — the daemon writes
an audit record, raises a metric and halts synthesis while the workload keeps
running. A file that changes is a violation even if it changes back: the
daemon already imported what it imported, and an operator should look.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from envelope.threads import StoppableThread

PACKAGES = ("daemon", "envelope", "invariants", "snapshots")


@dataclass(frozen=True)
class Violation:
    path: str
    expected: str
    actual: str  # "" when the file is gone


def file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def code_files(root: Path, packages: Iterable[str] = PACKAGES) -> list[Path]:
    """Every Python file of selfmod's packages below ``root``, sorted."""
    return sorted(p for pkg in packages for p in (root / pkg).rglob("*.py")
                  if "__pycache__" not in p.parts)


def checksums(paths: Iterable[Path]) -> dict[str, str]:
    return {str(p): file_sha256(p) for p in paths}


def compare(baseline: dict[str, str], current: dict[str, str]) -> list[Violation]:
    """Pure: the files whose hash differs from the baseline, or that appeared or vanished."""
    out = [Violation(path, sha, current.get(path, ""))
           for path, sha in baseline.items() if current.get(path, "") != sha]
    out += [Violation(path, "", sha) for path, sha in current.items() if path not in baseline]
    return sorted(out, key=lambda v: v.path)


class IntegrityMonitor(StoppableThread):
    """Re-checks code and policy checksums periodically; reports each new violation once."""

    def __init__(self, root: Path, policy_sha: Callable[[], tuple[str, str]],
                 on_violation: Callable[[Violation], None], interval: float = 30.0,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        super().__init__("selfmod-integrity", interval, on_error)
        self.root = root
        self._files = code_files(root)
        self.baseline = checksums(self._files)
        self._policy_sha = policy_sha  # () -> (recorded sha, sha recomputed from the object)
        self._on_violation = on_violation
        self.reported: set[str] = set()

    def check(self) -> list[Violation]:
        found = compare(self.baseline, checksums(code_files(self.root)))
        recorded, actual = self._policy_sha()
        if recorded != actual:
            found.append(Violation("<policy in force>", recorded, actual))
        new = [v for v in found if v.path not in self.reported]
        for violation in new:
            self.reported.add(violation.path)
            self._on_violation(violation)
        return new

    def step(self) -> None:
        self.check()
