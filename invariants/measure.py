"""Which lines and branches of the candidate, and of the original, the shadow's checks ran.

A differential check only proves what it executes. While the shadow replays the
recorded calls and runs its generated inputs, :class:`CoverageProbe` measures
line and branch coverage with ``coverage`` (its C tracer) of two code objects:
the candidate's, compiled from a file the probe writes into the private tmp dir
(coverage measures files, and a real file is what its parser reads), and the
original's, in its module's file. The benchmark is not measured.

Coverage's own pragmas are switched off: a candidate carrying ``# pragma: no
cover`` or ``# pragma: no branch`` must not hide its lines. The ``while True:``
kind of partial branch stays as coverage has it, for both codes alike.

Starting and stopping the tracer raise the ``sys.settrace`` audit event, and the
report is written and parsed after the run: those are the harness's own steps,
taken with the tripwire disarmed and never while candidate code runs.

Line numbers in :meth:`CoverageProbe.results` are relative to each function's
first source line (1 is the ``def``, or its first decorator), which is how the
parent numbers the candidate's and the original's sources.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import json
import os
import textwrap
import types
from collections.abc import Iterator
from typing import Any

import coverage
import coverage.exceptions
import coverage.jsonreport  # imported now, not while the run is measured

from invariants.tripwire import Tripwire

CANDIDATE_FILE = "candidate.py"


class CoverageProbe:
    """Coverage of one candidate and its original over the checks a shadow runs."""

    def __init__(self, tmpdir: str, candidate_source: str, original: types.FunctionType, *,
                 measure_original: bool = True) -> None:
        self.path = os.path.join(os.path.realpath(tmpdir), CANDIDATE_FILE)
        with open(self.path, "w", encoding="utf-8") as out:
            out.write(candidate_source)
        self._header = _header_lines(candidate_source)  # parsed now, before arming
        self._lines = len(candidate_source.splitlines())
        self._report = os.path.join(os.path.realpath(tmpdir), "coverage.json")
        self._module_file = os.path.realpath(original.__code__.co_filename)
        self._first = original.__code__.co_firstlineno
        self._last = _last_line(original.__code__)
        try:
            self._original_header = _header_lines(textwrap.dedent(inspect.getsource(original)))
        except (OSError, TypeError):  # no source: its def line at least
            self._original_header = {1}
        self._coverage = coverage.Coverage(
            data_file=None, branch=True, config_file=False,
            include=[self.path, self._module_file] if measure_original else [self.path])
        self._measure_original = measure_original
        self._coverage.set_option("report:exclude_lines", [])
        self._coverage.set_option("report:exclude_also", [])
        self._coverage.set_option("report:partial_branches", [])
        self._started = False

    @contextlib.contextmanager
    def measuring(self, tripwire: Tripwire) -> Iterator[None]:
        """Measure what runs inside the block (nested blocks measure once)."""
        if self._started:
            yield
            return
        with tripwire.disarmed():
            self._coverage.start()
        self._started = True
        try:
            yield
        finally:
            with tripwire.disarmed():
                self._coverage.stop()
            self._started = False

    def reached(self, tripwire: Tripwire) -> set[tuple[int, int]]:
        """The candidate's arcs (line to line, negative for entry and exit) run so far."""
        with tripwire.disarmed():
            arcs = self._coverage.get_data().arcs(self.path)
        return set(arcs or ())

    def results(self, tripwire: Tripwire) -> dict[str, Any]:
        """The report's ``coverage`` field: both codes' statements, branches and gaps."""
        with tripwire.disarmed():
            try:
                self._coverage.json_report(
                outfile=self._report,
                morfs=[self.path, self._module_file] if self._measure_original else [self.path])
            except coverage.exceptions.CoverageException:  # nothing of either code ran
                return {}
            with open(self._report, encoding="utf-8") as handle:
                files = json.load(handle)["files"]
        found = {os.path.realpath(name): data for name, data in files.items()}
        out: dict[str, Any] = {}
        candidate = found.get(self.path)
        if candidate is not None:
            out["candidate"] = _relative(candidate, 1, self._lines, skip=self._header)
        original = found.get(self._module_file)
        if original is not None:
            out["original"] = _relative(original, self._first, self._last,
                                        skip=self._original_header)
        return out


def _last_line(code: types.CodeType) -> int:
    """The last line of ``code`` and of every code object nested in it."""
    last = max((line for _, _, line in code.co_lines() if line is not None),
               default=code.co_firstlineno)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            last = max(last, _last_line(const))
    return last


def _header_lines(source: str) -> set[int]:
    """The candidate's decorator and ``def`` lines: run when a module is executed, never
    by a call, and the candidate is compiled, not executed as a module."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    lines: set[int] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            body = node.body[0].lineno if node.body else node.lineno + 1
            lines.update(range(start, max(body, node.lineno + 1)))
    return lines


def _relative(data: dict[str, Any], first: int, last: int,
              skip: set[int] | None = None) -> dict[str, Any]:
    """One file's JSON coverage cut to lines ``first..last``, renumbered from 1."""
    skip = skip or set()

    def inside(line: int) -> bool:
        return first <= line <= last and line - first + 1 not in skip

    def shift(line: int) -> int:
        return line - first + 1 if line > 0 else -(abs(line) - first + 1)

    executed = [n for n in data.get("executed_lines", []) if inside(n)]
    missing = [n for n in data.get("missing_lines", []) if inside(n)]
    taken = [(a, b) for a, b in data.get("executed_branches", []) if inside(a)]
    untaken = [(a, b) for a, b in data.get("missing_branches", []) if inside(a)]
    return {"statements": len(executed) + len(missing),
            "missing_lines": sorted(shift(n) for n in missing),
            "branches": len(taken) + len(untaken),
            "missing_branches": sorted([shift(a), shift(b)] for a, b in untaken)}
