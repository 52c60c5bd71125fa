"""Which lines and branches of the candidate, and of the original, the shadow's checks ran.

A differential check only proves what it executes. While the shadow replays the
recorded calls and runs its generated inputs, :class:`CoverageProbe` measures
line and branch coverage with ``coverage`` (its C tracer) of the candidate's
code, compiled from a file the probe writes into the private tmp dir (coverage
measures files, and a real file is what its parser reads). The tracer runs
only while a candidate call does (:class:`invariants.replay.CodeSwitch` starts
and stops it, about 10 µs each): left on across a check, it slowed the
original's calls and the harness's comparisons about threefold. The benchmark
is not measured.

The original's coverage is needed only to excuse a gap of the candidate (see
:mod:`invariants.proof`), and tracing a slow original while the checks run
would double their cost. So it is measured afterwards and only when the
candidate has a gap: :meth:`CoverageProbe.cover_original` runs the original
again over exactly the inputs the checks ran, in its module's file, traced.

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
from collections.abc import Callable, Iterator, Sequence
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
        self._coverage = _coverage(self.path)
        self._original = _coverage(self._module_file) if measure_original else None
        self._original_runs = 0  # how many of the checks' inputs it was measured over
        self._wanted = False  # inside a measuring() block
        self._started = False  # the tracer is on (a candidate call is running)

    @contextlib.contextmanager
    def measuring(self, tripwire: Tripwire) -> Iterator[None]:
        """Measure the candidate's calls made inside the block (see :meth:`begin`)."""
        wanted, self._wanted = self._wanted, True
        try:
            yield
        finally:
            self._wanted = wanted

    def begin(self) -> bool:
        """A call of the candidate starts (see :class:`invariants.replay.CodeSwitch`): the
        tracer runs for it, inside a :meth:`measuring` block; True when it was started."""
        if not self._wanted or self._started:
            return False
        self._coverage.start()
        self._started = True
        return True

    def end(self) -> None:
        self._coverage.stop()
        self._started = False

    def reached(self, tripwire: Tripwire) -> set[tuple[int, int]]:
        """The candidate's arcs (line to line, negative for entry and exit) run so far."""
        with tripwire.disarmed():
            arcs = self._coverage.get_data().arcs(self.path)
        return set(arcs or ())

    def cover_original(self, runs: Sequence[Callable[[], object]], tripwire: Tripwire) -> None:
        """Measure the original over ``runs`` not measured yet, when it is to be measured.

        ``runs`` holds one callable per input the checks ran, each running the
        original on that input; the list only grows, so a later call measures
        what was added since (the search's inputs after the replay's).
        """
        if self._original is None or self._original_runs >= len(runs):
            return
        with tripwire.disarmed():
            self._original.start()
        try:
            for run in runs[self._original_runs:]:
                run()
        finally:
            with tripwire.disarmed():
                self._original.stop()
        self._original_runs = len(runs)

    def results(self, tripwire: Tripwire) -> dict[str, Any]:
        """The report's ``coverage`` field: the candidate's statements, branches and gaps,
        and the original's when it was measured."""
        out: dict[str, Any] = {}
        candidate = self._measured(self._coverage, self.path, tripwire)
        if candidate is not None:
            out["candidate"] = _relative(candidate, 1, self._lines, skip=self._header)
        original = self._measured(self._original, self._module_file, tripwire) \
            if self._original is not None and self._original_runs else None
        if original is not None:
            out["original"] = _relative(original, self._first, self._last,
                                        skip=self._original_header)
        return out

    def _measured(self, measure: coverage.Coverage | None, path: str,
                  tripwire: Tripwire) -> dict[str, Any] | None:
        """``path``'s JSON coverage from ``measure``; None when nothing of it ran."""
        if measure is None:
            return None
        with tripwire.disarmed():
            try:
                measure.json_report(outfile=self._report, morfs=[path])
            except coverage.exceptions.CoverageException:  # nothing of the file ran
                return None
            with open(self._report, encoding="utf-8") as handle:
                files = json.load(handle)["files"]
        found = {os.path.realpath(name): data for name, data in files.items()}
        return found.get(path)


def _coverage(path: str) -> coverage.Coverage:
    """Line and branch coverage of the file at ``path`` only, with every pragma off."""
    measure = coverage.Coverage(data_file=None, branch=True, config_file=False, include=[path])
    measure.set_option("report:exclude_lines", [])
    measure.set_option("report:exclude_also", [])
    measure.set_option("report:partial_branches", [])
    return measure


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
