"""The symbolic diff: CrossHair searches for an input on which candidate and original differ.

Started by :class:`envelope.sandbox.Sandbox` in the same jail as the shadow,
after the shadow's runs have passed and when ``job.symbolic_seconds`` is
positive::

    python -s -P -m invariants.symbolic --result-fd N --tmpdir DIR --mode full
           --cpu-seconds S --memory-mb M ... (the shadow's options)

with the shadow's command line, job on stdin and report on the result fd, and
the shadow's start-up order (:func:`invariants.shadow.main`): limits, working
directory, preloaded modules, the tripwire installed and the finisher made,
then CrossHair imported, all before the job, and the candidate in it, is read.

Recorded calls say nothing about inputs nobody recorded; a candidate with a
wrong branch that no recorded call reaches (``if x == 7919: return 0``) passes
replay. Here CrossHair's behaviour diff explores both functions symbolically
for ``job.symbolic_seconds`` of CPU time (cut to what the CPU limit leaves),
when every parameter takes plain literals (:mod:`invariants.plaintypes`:
from the annotations, else inferred from the corpus).

**The jail is the boundary here, not the tripwire.** CrossHair drives the code
with ``sys.settrace`` and reads frames, which the armed tripwire forbids, so
the candidate runs under CrossHair with the tripwire installed but disarmed.
That is acceptable because this process does nothing else: no replay, no
benchmark, no verdict a candidate could fake in-process except this one, and
every other check already ran in a shadow with the tripwire armed. The
finisher is made before any candidate exists, as in the shadow. z3 runs its
solver timeouts on threads, so the sandbox gives this child a process limit
above the shadow's one. A candidate can end this process (or hang it) on a path
CrossHair explores; the sandbox records that as a note and judges by the other
checks, so what a candidate gains by it is only escaping this search.

Only a concrete, re-checked counterexample rejects. Each input CrossHair
reports is read back as a Python literal and run on the original and on the
candidate as the shadow runs a call (:class:`invariants.replay.PairRunner`,
tripwire armed, outcomes compared by :func:`invariants.compare.compare_outcomes`).
The report:

- ``mismatch``, one mismatch of kind ``symbolic`` per input that reproduces,
  and the input in ``found`` as ``repr((args, kwargs))``;
- ``ok`` with the note "symbolic diff: no difference found within N s (not a
  proof)"; or with a note saying why the diff was skipped (arguments that do not
  fit, no CPU time left), that CrossHair itself failed, or that what it
  reported did not reproduce;
- ``forbidden``, ``limit`` or ``error`` as the shadow reports them (the
  re-check tripped the wire, memory ran out, the harness failed).
"""

from __future__ import annotations

import _thread
import ast
import contextlib
import copy
import inspect
import sys
import time
import types
from collections import Counter
from collections.abc import Callable
from typing import Any

from invariants.compare import compare_outcomes
from invariants.guard import harness_modules, make_guard
from invariants.job import ShadowJob, ShadowLimits
from invariants.plaintypes import Unfitted, parameter_types
from invariants.render import call_repr
from invariants.replay import (
    CallBounds,
    CodeSwitch,
    PairRunner,
    ReplayResult,
    add_mismatch,
)
from invariants.report import MAX_FOUND, MAX_FOUND_CHARS, MAX_NOTE
from invariants.shadow import _NullOutput, _read_roots, load_target, serve
from invariants.targets import TargetError, compile_function, make_function
from invariants.tripwire import Tripwire

RESERVE_SECONDS = 1.0  # CPU kept back for the re-check and the report
MIN_SECONDS = 0.5  # a search shorter than this is not worth starting

Args = tuple[tuple[Any, ...], dict[str, Any]]


def main(argv: list[str] | None = None) -> int:
    # CrossHair is imported (and its patches registered) before the candidate exists.
    return serve(argv, lambda job, tripwire, _, limits, guards:
                 run_job(job, tripwire, limits, guards),
                 harness="symbolic", prepare=lambda: __import__("crosshair.core_and_libs"))


def run_job(job: ShadowJob, tripwire: Tripwire, limits: ShadowLimits,
            guards: list[Callable[[], list[str]]]) -> dict[str, Any]:
    """Load target and candidate, fit the argument types, diff, re-check what was found."""
    loaded = load_target(job)
    if isinstance(loaded, dict):
        return loaded
    target, corpus, func = loaded
    original_code = func.__code__
    try:
        candidate_code = compile_function(job.candidate_source, func,
                                          filename=f"<candidate {target}>")
        make_function(candidate_code, func)  # the live swap's checks: closure, defaults
    except (TargetError, SyntaxError, ValueError) as exc:
        return {"status": "error", "reason": f"cannot build the candidate: {exc}"}
    fit = parameter_types(func, (record.load_args for record in corpus.records))
    if isinstance(fit, Unfitted):
        return _ok(f"symbolic diff skipped: {fit.reason}")
    budget = min(job.symbolic_seconds,
                 limits.cpu_seconds - time.process_time() - RESERVE_SECONDS)
    if budget < MIN_SECONDS:
        return _ok(f"symbolic diff skipped: {max(budget, 0):.1f} s of CPU time left for it")
    budget = round(budget, 1)
    signature = inspect.signature(func)
    try:
        with contextlib.redirect_stdout(_NullOutput()):
            inputs, nondeterministic = _search(func, original_code, candidate_code,
                                               fit.types, signature, budget)
    except MemoryError:
        raise
    except Exception as exc:  # CrossHair's own failure is no evidence against the candidate
        return _ok(f"symbolic diff failed: {type(exc).__name__}: {exc}")
    finally:
        func.__code__ = original_code
    notes = ["symbolic diff: some paths ran nondeterministically and were ignored"] \
        if nondeterministic else []
    if isinstance(inputs, str):
        return _ok(f"symbolic diff failed: {inputs}", *notes)
    if not inputs:
        return _ok(f"symbolic diff: no difference found within {budget:g} s (not a proof)",
                   *notes)
    found = [(args, _found_text(*args)) for args in
             (_literal_args(signature, reprs) for reprs in inputs) if args is not None]
    if not found:
        return _ok("symbolic diff: CrossHair reported a difference on inputs that are not "
                   f"plain literals, not re-checked: {_shown(inputs[0])}", *notes)
    return _recheck(func, original_code, candidate_code, found, tripwire, guards, notes)


def _search(func: types.FunctionType, original: types.CodeType, candidate: types.CodeType,
            hints: dict[str, Any], signature: inspect.Signature, budget: float
            ) -> tuple[list[dict[str, str]] | str, bool]:
    """CrossHair's behaviour diff: the differing inputs (a repr per parameter) or its error."""
    from crosshair.diff_behavior import diff_behavior
    from crosshair.fnutil import FunctionInfo
    from crosshair.options import DEFAULT_OPTIONS, AnalysisOptionSet

    typed = signature.replace(parameters=[param.replace(annotation=hints[param.name])
                                          for param in signature.parameters.values()],
                              return_annotation=inspect.Signature.empty)
    options = DEFAULT_OPTIONS.overlay(AnalysisOptionSet(
        per_condition_timeout=budget, per_path_timeout=max(budget / 4, 0.25)))
    options.stats = Counter()
    nondeterminism: list[bool] = []
    diffs = diff_behavior(
        FunctionInfo.from_fn(_running(func, original, typed, hints)),
        FunctionInfo.from_fn(_running(func, candidate, typed, hints)),
        options, on_nondeterminism=lambda: nondeterminism.append(True))
    if isinstance(diffs, str):
        return diffs, bool(nondeterminism)
    return [dict(diff.args) for diff in diffs], bool(nondeterminism)


def _running(func: types.FunctionType, code: types.CodeType, signature: inspect.Signature,
             hints: dict[str, Any]) -> Callable[..., Any]:
    """``func`` running ``code``, as the live swap runs it (recursive calls included)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        func.__code__ = code
        return func(*args, **kwargs)

    run.__signature__ = signature  # type: ignore[attr-defined]
    run.__annotations__ = dict(hints)
    return run


def _literal_args(signature: inspect.Signature, reprs: dict[str, str]) -> Args | None:
    """The call CrossHair describes, when every argument reads back as a plain literal."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.name not in reprs:
            return None
        try:
            value = ast.literal_eval(reprs[param.name])
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
        if param.kind is param.KEYWORD_ONLY:
            kwargs[param.name] = value
        else:
            args.append(value)
    return tuple(args), kwargs


def _recheck(func: types.FunctionType, original: types.CodeType, candidate: types.CodeType,
             inputs: list[tuple[Args, str | None]], tripwire: Tripwire,
             guards: list[Callable[[], list[str]]], notes: list[str]) -> dict[str, Any]:
    """Run each input on both versions as the shadow runs a call; keep those that differ.

    ``inputs`` pair each call with its literal text for ``found``, made before the
    tripwire is armed (``ast.literal_eval`` compiles, which the armed wire forbids).
    """
    tripwire.read_roots = _read_roots()
    refresh, changes = make_guard(harness_modules())
    guards.append(changes)
    tripwire.arm()
    switch = CodeSwitch(func, original, candidate, tripwire)
    runner = PairRunner(switch, tripwire, CallBounds(), _thread._count, (refresh, changes))
    result = ReplayResult()
    found: list[str] = []
    for index, ((args, kwargs), text) in enumerate(inputs):
        outcomes = runner.run(_copies(args, kwargs), result)
        if outcomes is None:
            return {"status": result.status, "reason": result.reason, "notes": notes}
        difference = compare_outcomes(outcomes["original"], outcomes["candidate"])
        if difference is not None:
            add_mismatch(result, index, (args, kwargs), difference, kind="symbolic")
            if text is not None and len(found) < MAX_FOUND:
                found.append(text)
    if result.status != "mismatch":
        return _ok("symbolic diff: the difference CrossHair reported did not reproduce when "
                   f"run: {call_repr(*inputs[0][0], limit=150)}", *notes)
    first = result.mismatches[0]
    return {"status": "mismatch", "notes": notes, "found": found,
            "mismatches": result.mismatches,
            "reason": f"the symbolic diff found an input no recorded call covers, on which "
                      f"the candidate differs: {first['args_repr']} ({first['kind']})"}


def _copies(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[[], Args]:
    """A loader of fresh copies of one call's arguments (each version gets its own)."""
    return lambda: (copy.deepcopy(args), copy.deepcopy(kwargs))


def _found_text(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """``repr((args, kwargs))`` when ``ast.literal_eval`` reads it back as the same call."""
    text = repr((args, kwargs))
    if len(text) > MAX_FOUND_CHARS:
        return None
    try:
        again = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return text if repr(again) == text else None


def _shown(reprs: dict[str, str]) -> str:
    return ", ".join(f"{name}={text}" for name, text in reprs.items())[:150]


def _ok(*notes: str) -> dict[str, Any]:
    return {"status": "ok", "reason": "", "notes": [note[:MAX_NOTE] for note in notes]}


if __name__ == "__main__":
    sys.exit(main())
