"""Guided search for inputs that reach the candidate code the other checks missed.

After replay and the property checks, the candidate may still have lines or
branches no input ran (see :mod:`invariants.proof`). Before the parent calls
them unproven, the shadow looks for inputs that reach them, within the policy's
``verification.search_seconds``:

- inputs found earlier for the same target (kept by the daemon, see
  :mod:`snapshots.found`) run first, so a known fault rejects a candidate at once;
- then recorded calls are mutated, one to three edits stacked (each edit one of
  :func:`invariants.variants.variants` at a random place of the input), with the
  integer and string constants of the *candidate's* code first (its guards are
  where a rare fault hides: ``len(xs) > 7``, ``key == "root"``), then the
  original's;
- coverage is the guide: an input that runs a candidate line or branch nothing
  ran before joins the seeds that later inputs are mutated from, and the search
  stops as soon as every candidate line and branch has run.

Every input runs on the original and the candidate through the same
:class:`invariants.replay.PairRunner` as the other checks and is compared the
same way. A difference is a mismatch of kind ``found``; the input, and every
input that reached new candidate code, go back to the parent as Python literals
(when they are plain data), never as pickles.

Everything the search draws from the candidate (its constants) is read before
the tripwire is armed, in :func:`plan_search`.
"""

from __future__ import annotations

import ast
import functools
import math
import pickle
import random
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from invariants.canonical import Uncomparable
from invariants.compare import compare_outcomes
from invariants.measure import CoverageProbe
from invariants.replay import Observer, PairRunner, ReplayResult, add_mismatch, ends_process
from invariants.tripwire import Tripwire
from invariants.variants import Constants, code_constants, variants

Call = tuple[tuple[Any, ...], dict[str, Any]]

MAX_SEEDS = 64  # distinct recorded calls the search mutates from
MAX_KEPT = 10  # inputs sent back to the parent per run
MAX_LITERAL = 4_000  # characters of one input's literal
_PLAIN = (int, float, str, bytes, bool, type(None))


@dataclass
class SearchPlan:
    """What the search starts from, drawn before the candidate runs."""

    seeds: list[Call]
    found: list[Call]
    constants: Constants
    rng: random.Random = field(default_factory=lambda: random.Random(0))


@dataclass
class SearchRun:
    """What the search did: the result (status, evidence), inputs tried, inputs kept."""

    result: ReplayResult
    tries: int = 0
    kept: list[str] = field(default_factory=list)
    complete: bool = False  # every candidate line and branch ran


def plan_search(calls: Sequence[Call], found: Sequence[Call], candidate: types.CodeType,
                original: types.CodeType, doc: str | None, seed: int = 0) -> SearchPlan:
    """Seeds, constants and a seeded generator; call before the tripwire is armed."""
    theirs, ours = code_constants(candidate, doc), code_constants(original, doc)
    constants = Constants(tuple(dict.fromkeys(theirs.ints + ours.ints)),
                          tuple(dict.fromkeys(theirs.strs + ours.strs)))
    return SearchPlan(list(calls[:MAX_SEEDS]), list(found), constants, random.Random(seed))


def literal(call: Call) -> str | None:
    """``repr(call)`` when it is plain data that :func:`ast.literal_eval` reads back."""
    if not _plain(call, 0):
        return None
    text = repr(call)
    return text if len(text) <= MAX_LITERAL else None


def from_literal(text: str) -> Call | None:
    """A call back from :func:`literal`'s text; None for anything else."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None
    if type(value) is tuple and len(value) == 2 and type(value[0]) is tuple and \
            type(value[1]) is dict and all(type(k) is str for k in value[1]):
        return value[0], value[1]
    return None


def _plain(value: Any, depth: int) -> bool:
    if depth > 8:
        return False
    kind = type(value)
    if kind is float:
        return math.isfinite(value)
    if kind in _PLAIN:
        return True
    if kind in (list, tuple, set, frozenset):
        return all(_plain(item, depth + 1) for item in value)
    if kind is dict:
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in value.items())
    return False


def search(plan: SearchPlan, runner: PairRunner, probe: CoverageProbe, tripwire: Tripwire,
           seconds: float, *, deadline_ms: int, observe: Observer | None = None,
           missing: tuple[set[int], set[tuple[int, int]]],
           clock: Callable[[], float] = time.monotonic) -> SearchRun:
    """Run found inputs, then mutated ones, until a difference, full coverage or the time.

    ``missing`` is the candidate code to reach: the lines and branches not run yet,
    less what :mod:`invariants.proof` would excuse anyway.
    """
    run = SearchRun(ReplayResult())
    reached = probe.reached(tripwire)
    pool = list(plan.seeds)
    stop_at = clock() + seconds
    queue = list(plan.found)
    while True:
        run.complete = _covered(missing, reached)
        if queue:
            call = queue.pop(0)
        elif run.complete or not pool or clock() >= stop_at:
            return run
        else:
            call = _mutated(plan.rng.choice(pool), plan, plan.rng.randint(1, 3))
        try:
            blob = pickle.dumps(call, protocol=5)
        except Exception:
            continue
        run.tries += 1
        with probe.measuring(tripwire):
            outcomes = runner.run(functools.partial(_load, blob), run.result)
        if outcomes is None:  # forbidden, error or stateful: recorded in the result
            return run
        if runner.seconds.get("original", 0.0) * 1000 > deadline_ms:
            continue
        original, candidate = outcomes["original"], outcomes["candidate"]
        if ends_process(original, candidate):
            run.result.status = "error"
            run.result.reason = f"the candidate tried to end the process ({candidate.exc_type})"
            return run
        try:
            difference = compare_outcomes(original, candidate)
            if difference is None and observe is not None:
                difference = observe(_load(blob), original, candidate)
        except Uncomparable:
            continue
        now = probe.reached(tripwire)
        new = now - reached
        reached = now
        if difference is not None:
            add_mismatch(run.result, run.tries - 1, _load(blob), difference, kind="found")
            run.result.reason = (f"input search: an input the recorded calls did not have "
                                 f"gives a different outcome ({difference.kind})")
            _keep(run, call)
            return run
        if new:
            pool.append(call)
            _keep(run, call)


def _covered(missing: tuple[set[int], set[tuple[int, int]]],
             reached: set[tuple[int, int]]) -> bool:
    lines, branches = missing
    ran = {b for _, b in reached}
    return lines <= ran and all(branch in reached or (branch[1] < 0 and any(
        a == branch[0] and b < 0 for a, b in reached)) for branch in branches)


def _keep(run: SearchRun, call: Call) -> None:
    text = literal(call)
    if text is not None and len(run.kept) < MAX_KEPT and text not in run.kept:
        run.kept.append(text)


def _load(blob: bytes) -> Call:
    args, kwargs = pickle.loads(blob)
    return tuple(args), dict(kwargs)


def _mutated(call: Call, plan: SearchPlan, edits: int) -> Call:
    args, kwargs = call
    for _ in range(edits):
        slots = len(args) + len(kwargs)
        if slots == 0:
            break
        slot = plan.rng.randrange(slots)
        if slot < len(args):
            args = (*args[:slot], _edit(args[slot], plan, 0), *args[slot + 1:])
        else:
            key = list(kwargs)[slot - len(args)]
            kwargs = {**kwargs, key: _edit(kwargs[key], plan, 0)}
    return args, kwargs


def _edit(value: Any, plan: SearchPlan, depth: int) -> Any:
    """``value`` with one edit: of itself, or (half the time) of one element inside it."""
    rng = plan.rng
    kind = type(value)
    if depth < 3 and rng.random() < 0.5:
        if kind in (list, tuple) and value:
            index = rng.randrange(len(value))
            items = list(value)
            items[index] = _edit(items[index], plan, depth + 1)
            return items if kind is list else tuple(items)
        if kind is dict and value:
            key = rng.choice(list(value)[:32])
            return {**value, key: _edit(value[key], plan, depth + 1)}
    options = variants(value, plan.constants, depth)
    return rng.choice(options) if options else value
