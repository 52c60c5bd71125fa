"""Differential replay: every recorded call, on the original and on the candidate.

Both run in this process, as the same function object with its ``__code__``
switched between the original's and the candidate's code object: that is exactly
what the live swap does, so a recursive call through the module's global name
reaches the candidate's code here as it will in production.

With a :class:`invariants.statecheck.StateWatch`, each call is also fingerprinted
for the state it leaves behind (module globals, the function's attributes,
defaults and closure): a candidate whose call changes what the original's call on
the same input left alone keeps state between calls, and the replay stops at the
first such call with a mismatch of kind ``stateful``. With an ``order``, the
records run in that order (a second process replays a shuffled corpus, so state
carried from one call to the next shows up as a different outcome), while
fingerprints and evidence stay indexed by record.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import pickle
import random
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from invariants.canonical import Uncomparable, alias_paths, same
from invariants.compare import (
    ITERATOR,
    RAISE,
    RETURN,
    Difference,
    Outcome,
    compare_outcomes,
    exception_message,
    exception_name,
    outcome_fingerprint,
)
from invariants.render import call_repr
from invariants.statecheck import Fingerprint, StateWatch, stateful_difference
from invariants.tripwire import Tripwire
from snapshots.corpus import CallRecord

UNREPRODUCIBLE = "original not reproducible in the shadow (impure or nondeterministic target)"
MAX_EVIDENCE = 5
_Random = random.Random  # bound at import, before any candidate exists


class LimitReached(Exception):
    """A call ran out of memory: the resource limit, not behaviour."""


@dataclass(frozen=True)
class CallBounds:
    iterator_items: int = 10_000
    stdout_chars: int = 65_536


class CapturedOutput(io.TextIOBase):
    """A stdout stand-in that keeps a bounded head and a digest of everything written."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._head: list[str] = []
        self._kept = 0
        self._total = 0
        self._digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if type(text) is not str:
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._total += len(text)
        self._digest.update(text.encode("utf-8", "surrogatepass"))
        if self._kept < self._cap:
            piece = text[: self._cap - self._kept]
            self._head.append(piece)
            self._kept += len(piece)
        return len(text)

    def value(self) -> str:
        head = "".join(self._head)
        if self._total <= self._cap:
            return head
        return f"{head}…[{self._total} chars in all, sha256 {self._digest.hexdigest()[:16]}]"


def call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
         bounds: CallBounds = CallBounds()) -> Outcome:
    """Call ``fn`` and capture everything it did; a returned iterator is materialised."""
    out = CapturedOutput(bounds.stdout_chars)
    with contextlib.redirect_stdout(out):
        try:
            result = fn(*args, **kwargs)
        except MemoryError as exc:
            raise LimitReached("memory limit reached") from exc
        except BaseException as exc:  # behaviour, including SystemExit
            return Outcome(RAISE, exc_type=exception_name(type(exc)),
                           exc_message=exception_message(exc), args_after=(args, kwargs),
                           aliases=(), stdout=out.value())
        if _is_iterator(result):
            return _materialise(result, args, kwargs, bounds, out)
    return Outcome(RETURN, value=result, args_after=(args, kwargs),
                   aliases=alias_paths(result, args, kwargs), stdout=out.value())


def _is_iterator(result: object) -> bool:
    tp = type(result)
    if tp in (types.GeneratorType,):
        return True
    return tp.__dict__.get("__next__") is not None or any(
        "__next__" in klass.__dict__ for klass in tp.__mro__[1:-1])


def _materialise(iterator: Iterator[Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 bounds: CallBounds, out: CapturedOutput) -> Outcome:
    items: list[Any] = []
    exc_type = exc_message = None
    truncated = False
    try:
        for item in iterator:
            if len(items) == bounds.iterator_items:
                truncated = True
                break
            items.append(item)
    except MemoryError as exc:
        raise LimitReached("memory limit reached") from exc
    except BaseException as exc:
        exc_type, exc_message = exception_name(type(exc)), exception_message(exc)
    value = tuple(items)
    return Outcome(ITERATOR, value=value, exc_type=exc_type, exc_message=exc_message,
                   truncated=truncated, args_after=(args, kwargs),
                   aliases=alias_paths(value, args, kwargs), stdout=out.value())


def recorded_outcome(record: CallRecord, observed: Outcome) -> Outcome:
    """The live outcome of ``record``, shaped to be compared with ``observed``.

    A live record keeps no printed output and no aliasing, so those are left out;
    a recorder that stored a generator's items as a list is compared item by item,
    and an exception type recorded without its module matches by qualified name.
    """
    args_after = None
    if record.args_after_blob is not None:
        after_args, after_kwargs = pickle.loads(record.args_after_blob)
        args_after = (tuple(after_args), dict(after_kwargs))
    if record.outcome == RAISE:
        exc_type = record.exc_type
        if exc_type and observed.exc_type and "." not in exc_type and \
                observed.exc_type.endswith("." + exc_type):
            exc_type = observed.exc_type
        return Outcome(RAISE, exc_type=exc_type, exc_message=record.exc_message,
                       args_after=args_after)
    value = pickle.loads(record.result_blob) if record.result_blob is not None else None
    if observed.kind == ITERATOR and isinstance(value, (list, tuple)) and \
            type(value) in (list, tuple):
        return Outcome(ITERATOR, value=tuple(value), exc_type=observed.exc_type,
                       exc_message=observed.exc_message, truncated=observed.truncated,
                       args_after=args_after)
    return Outcome(RETURN, value=value, args_after=args_after)


@dataclass
class ReplayResult:
    """What replaying a corpus found; ``status`` is ok | mismatch | error | forbidden | limit."""

    status: str = "ok"
    reason: str = ""
    calls: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    mismatch_count: int = 0
    fingerprints: list[str] = field(default_factory=list)
    mutates: bool = False
    iterators: bool = False


class Measure(Protocol):
    """A measurement of the candidate's own calls (its coverage, see invariants.measure)."""

    def begin(self) -> bool: ...  # True when it started measuring now

    def end(self) -> None: ...


class CodeSwitch:
    """Runs the target function object with either code object, as the live swap would.

    With ``measure``, each call of the candidate is measured, and nothing else:
    a tracer left on across the checks would see every line the original and the
    harness's comparisons run too, and slowed a replay threefold.
    """

    def __init__(self, func: types.FunctionType, original: types.CodeType,
                 candidate: types.CodeType, tripwire: Tripwire, *,
                 measure: Measure | None = None) -> None:
        self.func = func
        self._codes = {"original": original, "candidate": candidate}
        self._tripwire = tripwire
        self._measure = measure

    @contextlib.contextmanager
    def running(self, which: str) -> Iterator[types.FunctionType]:
        with self._tripwire.disarmed():  # the tracer's start and stop are audited
            self.func.__code__ = self._codes[which]
            measured = which == "candidate" and self._measure is not None and \
                self._measure.begin()
        try:
            with self._tripwire.context(which):
                yield self.func
        finally:
            if measured:
                assert self._measure is not None
                with self._tripwire.disarmed():
                    self._measure.end()


Guard = tuple[Callable[[], None], Callable[[], list[str]]]
LoadArgs = Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]  # a fresh copy of one input
# What observes each call whose outcomes matched: (arguments before the call, the
# original's outcome, the candidate's) -> the difference it finds, or None.
Observer = Callable[[tuple[tuple[Any, ...], dict[str, Any]], Outcome, Outcome],
                    Difference | None]


@dataclass
class PairRunner:
    """Runs one call on the original, then on the candidate, under the shadow's watch.

    The state guard is re-read after the original call and checked after the
    candidate's, so only what the candidate changes counts; a started thread or a
    tripwire sighting ends the run. With a ``state`` watch, a candidate call that
    changes state the original's call left alone ends the run too, as a ``stateful``
    mismatch recorded in ``result`` at ``index`` (by default, the number of pairs run
    before). :meth:`run` returns the two outcomes, or None after recording why in
    ``result`` (status ``forbidden``, ``error`` or ``mismatch``).
    """

    switch: CodeSwitch
    tripwire: Tripwire
    bounds: CallBounds = field(default_factory=CallBounds)
    thread_count: Callable[[], int] = lambda: 0
    guard: Guard | None = None
    # Bound when the runner is made, before the candidate exists (see invariants.guard).
    clock: Callable[[], float] = time.perf_counter
    state: StateWatch | None = None
    # every input run is appended here, when given (see CoverageProbe.cover_original)
    inputs: list[LoadArgs] | None = None
    threads: int = field(init=False, default=0)
    seconds: dict[str, float] = field(init=False, default_factory=dict)
    runs: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.threads = self.thread_count()

    def run(self, load_args: LoadArgs, result: ReplayResult, *,
            index: int | None = None) -> dict[str, Outcome] | None:
        position = self.runs if index is None else index
        self.runs += 1
        if self.inputs is not None:
            self.inputs.append(load_args)
        outcomes: dict[str, Outcome] = {}
        changed: dict[str, dict[str, str]] = {}
        for which in ("original", "candidate"):
            args, kwargs = load_args()
            if self.guard is not None and which == "candidate":
                self.guard[0]()
            before = self._fingerprint()
            with self.switch.running(which) as fn:
                start = self.clock()
                outcomes[which] = call(fn, args, kwargs, self.bounds)
                self.seconds[which] = self.clock() - start
            changed[which] = self._changes(before)
            guard_changes = self.guard[1]() if self.guard is not None and \
                which == "candidate" else []
            if guard_changes:
                result.status = "forbidden"
                result.reason = ("the candidate rebinds what the shadow relies on: "
                                 + ", ".join(guard_changes[:5]))
                return None
            if self.thread_count() != self.threads:
                result.status, result.reason = "forbidden", f"the {which} started a thread"
                return None
            if self.tripwire.sightings:
                _forbidden(result, self.tripwire)
                return None
        difference = stateful_difference(changed["original"], changed["candidate"]) \
            if self.state is not None else None
        if difference is not None:
            with self.tripwire.context("harness"):
                before_args = load_args()
            add_mismatch(result, position, before_args, difference)
            result.reason = (f"the candidate keeps state between calls: {difference.actual} "
                             f"(call {position})")
            return None
        return outcomes

    def _fingerprint(self) -> Fingerprint | None:
        if self.state is None:
            return None
        with self.tripwire.context("harness"):
            return self.state.fingerprint()

    def _changes(self, before: Fingerprint | None) -> dict[str, str]:
        if self.state is None:
            return {}
        with self.tripwire.context("harness"):
            return self.state.changes(before, self.state.fingerprint())


def replay(switch: CodeSwitch, records: Sequence[CallRecord], tripwire: Tripwire,
           bounds: CallBounds = CallBounds(), *,
           thread_count: Callable[[], int] = lambda: 0,
           guard: Guard | None = None, observe: Observer | None = None,
           state: StateWatch | None = None, order: Sequence[int] | None = None,
           inputs: list[LoadArgs] | None = None) -> ReplayResult:
    """Replay ``records`` on both versions and compare outcomes call by call.

    ``guard`` is :func:`invariants.guard.make_guard`'s pair (see :class:`PairRunner`).
    ``observe`` sees every call whose outcomes match (the declared invariants).
    ``state`` watches for state the candidate keeps between calls (see
    :mod:`invariants.statecheck`); the first call that shows it ends the replay.
    ``order`` (a permutation of the record indices, see :func:`shuffled_order`) is
    the order to run them in; fingerprints and mismatch indices still follow the
    records' own order. ``inputs`` collects every input run (see :class:`PairRunner`).
    """
    if order is not None and sorted(order) != list(range(len(records))):
        raise ValueError(f"order must be a permutation of the {len(records)} record indices")
    indices = list(order) if order is not None else list(range(len(records)))
    result = ReplayResult()
    runner = PairRunner(switch, tripwire, bounds, thread_count, guard, state=state,
                        inputs=inputs)
    ran: list[int] = []
    _replay_in_order(runner, records, indices, observe, result, ran)
    if order is not None:
        result.fingerprints = [fp for _, fp in sorted(zip(ran, result.fingerprints,
                                                          strict=True))]
    if result.status == "mismatch" and not result.reason:
        first = result.mismatches[0]
        result.reason = (f"{result.mismatch_count} of {result.calls} calls differ; first: "
                         f"call {first['index']} ({first['kind']})")
    return result


def shuffled_order(n: int, seed: int) -> list[int] | None:
    """The order to replay ``n`` records in under ``seed``: None (as recorded) for seed 0."""
    if seed == 0:
        return None
    order = list(range(n))
    _Random(seed).shuffle(order)
    return order


def _replay_in_order(runner: PairRunner, records: Sequence[CallRecord], indices: list[int],
                     observe: Observer | None, result: ReplayResult, ran: list[int]) -> None:
    """The replay loop; stops early with ``result`` saying why. ``ran`` gets the index of
    each record fingerprinted, in the order they ran."""
    for index in indices:
        record = records[index]
        before = record.load_args()
        outcomes = runner.run(record.load_args, result, index=index)
        if outcomes is None:
            return
        result.calls += 1
        original, candidate = outcomes["original"], outcomes["candidate"]
        try:
            live = compare_outcomes(recorded_outcome(record, original), original)
            if live is not None:
                result.status = "error"
                result.reason = (f"{UNREPRODUCIBLE}: call {index} {live.kind} differs from the "
                                 f"recording: live {live.expected}, shadow {live.actual}")
                return
            if ends_process(original, candidate):
                result.status = "error"
                result.reason = f"the candidate tried to end the process ({candidate.exc_type})"
                return
            result.mutates |= not same(before, original.args_after)
            result.iterators |= original.kind == ITERATOR
            difference = compare_outcomes(original, candidate)
            if difference is None and observe is not None:
                difference = observe(before, original, candidate)
            result.fingerprints.append(outcome_fingerprint(candidate)[:16])
            ran.append(index)
        except Uncomparable as exc:
            result.status, result.reason = "error", f"call {index}: {exc}"
            return
        if difference is not None:
            add_mismatch(result, index, before, difference)


def ends_process(original: Outcome, candidate: Outcome) -> bool:
    """Whether the candidate raised SystemExit or KeyboardInterrupt where the original did not."""
    return candidate.kind == RAISE and \
        candidate.exc_type in ("SystemExit", "KeyboardInterrupt") and \
        original.exc_type != candidate.exc_type


def add_mismatch(result: ReplayResult, index: int,
                 before: tuple[tuple[Any, ...], dict[str, Any]], difference: Difference,
                 kind: str | None = None) -> None:
    """Count a differing call and keep its evidence (the first few only)."""
    result.status = "mismatch"
    result.mismatch_count += 1
    if len(result.mismatches) < MAX_EVIDENCE:
        result.mismatches.append({
            "index": index, "args_repr": call_repr(*before),
            "expected": difference.expected, "actual": difference.actual,
            "kind": kind or difference.kind})


def _forbidden(result: ReplayResult, tripwire: Tripwire) -> ReplayResult:
    first = tripwire.sightings[0]
    if all(sighting.context == "original" for sighting in tripwire.sightings):
        result.status = "error"
        result.reason = f"the original performs a forbidden operation: {first.detail}"
    else:
        result.status = "forbidden"
        result.reason = f"the {first.context} attempted a forbidden operation: {first.detail}"
    return result

