"""Unexercised candidate code: what the shadow's checks never ran, and what of it is excused.

Pure. The differential checks prove only what they execute; a candidate line or
branch that no recorded call, generated input or found input reached is
unproven code. :func:`unexercised` names it, from the coverage in a shadow
report.

One gap is excused: code a rule's rewrite left exactly as the original had it,
where the original's own code was just as unexercised (a rule that rewrites one
loop and keeps an untouched error branch). The proposer states that it kept the
rest of the function (``keeps_original``); the check does not take its word:
the candidate's line must sit in the same place of the source as an original
line (a line alignment of the two sources), the innermost statements holding
both must have equal syntax trees, and the original's coverage must show the
very same line or branch unexercised too.
"""

from __future__ import annotations

import ast
import difflib
import textwrap
from dataclasses import dataclass

from invariants.report import CodeCoverage

__all__ = ["Unproven", "unexercised"]


@dataclass(frozen=True)
class Unproven:
    """The candidate's lines and branches no check ran, and how many gaps were excused."""

    lines: tuple[int, ...]
    branches: tuple[tuple[int, int], ...]
    excused: int = 0
    measured: bool = True

    def describe(self) -> str:
        """One sentence naming the lines, e.g. ``line 4 and branch 3->5 never ran``."""
        if not self.measured:
            return "the shadow did not measure which candidate lines its checks ran"
        parts = []
        if self.lines:
            parts.append(_plural("line", [str(n) for n in self.lines]))
        if self.branches:
            parts.append(_plural("branch", [_branch(a, b) for a, b in self.branches], "es"))
        return (" and ".join(parts) + " of the candidate never ran under replay, property "
                "checks or the input search")


def unexercised(coverage: CodeCoverage | None, original_coverage: CodeCoverage | None,
                candidate_source: str, original_source: str, *,
                keeps_original: bool) -> Unproven | None:
    """The candidate's unexercised, unexcused code; None when the checks ran all of it."""
    if coverage is None:
        return Unproven((), (), measured=False)
    if coverage.complete:
        return None
    lines, branches = list(coverage.missing_lines), list(coverage.missing_branches)
    excused = 0
    if keeps_original and original_coverage is not None:
        same = _Alignment(candidate_source, original_source)
        kept_lines = [n for n in lines if same.line_kept(n, original_coverage)]
        kept_branches = [br for br in branches if same.branch_kept(br, original_coverage)]
        excused = len(kept_lines) + len(kept_branches)
        lines = [n for n in lines if n not in kept_lines]
        branches = [br for br in branches if br not in kept_branches]
    if not lines and not branches:
        return None
    return Unproven(tuple(lines), tuple(branches), excused)


class _Alignment:
    """Where each candidate line sits in the original, and the statements holding both."""

    def __init__(self, candidate: str, original: str) -> None:
        self._candidate = _tree(candidate)
        self._original = _tree(original)
        ours = [line.strip() for line in candidate.splitlines()]
        theirs = [line.strip() for line in original.splitlines()]
        matcher = difflib.SequenceMatcher(None, ours, theirs, autojunk=False)
        self._map: dict[int, int] = {}
        for block in matcher.get_matching_blocks():
            for k in range(block.size):
                self._map[block.a + k + 1] = block.b + k + 1

    def _twin(self, line: int) -> int | None:
        """The original line at ``line``'s place, when the statements there are equal."""
        there = self._map.get(line)
        if there is None or self._candidate is None or self._original is None:
            return None
        ours, theirs = _statement_at(self._candidate, line), _statement_at(self._original, there)
        if ours is None or theirs is None or _dump(ours) != _dump(theirs):
            return None
        if ours.lineno - line != theirs.lineno - there:
            return None
        return there

    def line_kept(self, line: int, original: CodeCoverage) -> bool:
        there = self._twin(line)
        return there is not None and there in original.missing_lines

    def branch_kept(self, branch: tuple[int, int], original: CodeCoverage) -> bool:
        start, end = branch
        there = self._twin(start)
        if there is None:
            return False
        if end < 0:  # leaving the function: any exit of the original's same statement
            return any(a == there and b < 0 for a, b in original.missing_branches)
        return (there, self._map.get(end, 0)) in original.missing_branches


def _tree(source: str) -> ast.Module | None:
    try:
        return ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return None


def _statement_at(tree: ast.Module, line: int) -> ast.stmt | None:
    """The innermost statement whose lines include ``line``."""
    found: ast.stmt | None = None
    for node in ast.walk(tree):
        if not isinstance(node, ast.stmt):
            continue
        end = node.end_lineno or node.lineno
        if node.lineno <= line <= end and (
                found is None or end - node.lineno <= (found.end_lineno or 0) - found.lineno):
            found = node
    return found


def _dump(node: ast.AST) -> str:
    return ast.dump(node, annotate_fields=True, include_attributes=False)


def _branch(start: int, end: int) -> str:
    return f"{start}->exit" if end < 0 else f"{start}->{end}"


def _plural(noun: str, items: list[str], suffix: str = "s") -> str:
    if len(items) == 1:
        return f"{noun} {items[0]}"
    shown = items[:12] + ([f"{len(items) - 12} more"] if len(items) > 12 else [])
    return f"{noun}{suffix} {', '.join(shown[:-1])} and {shown[-1]}"
