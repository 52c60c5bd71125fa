"""Property checks: generated inputs run on the original and the candidate, compared as replay is.

The inputs come from :mod:`invariants.strategies`, drawn before the candidate
existed. Each one runs on both versions through the same
:class:`invariants.replay.PairRunner` as the recorded calls (same tripwire, same
state guard, same comparison of values, exceptions, mutation, aliasing and
output), so an input on which the original raises is fine: the candidate must
raise the same exception with the same message.

The policy's ``deadline_ms`` bounds each example: an input on which the original
itself takes longer is dropped (it says nothing about the candidate), and a
candidate that takes longer where the original did not, twice in a row, fails
the property (slow on inputs the corpus did not show is a regression too).

Any difference is a mismatch of kind ``property`` (or ``invariant`` when a
declared predicate failed); the evidence keeps the smallest failing inputs.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from invariants.canonical import Uncomparable
from invariants.compare import Difference, compare_outcomes
from invariants.job import ShadowJob
from invariants.render import call_repr
from invariants.replay import (
    MAX_EVIDENCE,
    Observer,
    PairRunner,
    ReplayResult,
    add_mismatch,
    ends_process,
)
from invariants.variants import code_constants, systematic_calls

Args = tuple[tuple[Any, ...], dict[str, Any]]


@dataclass(frozen=True)
class PropertyRun:
    """What the generated inputs found: the result (status, evidence) and the counts."""

    result: ReplayResult
    examples: int  # inputs run on both versions and compared
    slow_originals: int  # inputs dropped because the original missed the deadline


def _loader(blob: bytes) -> Callable[[], Args]:
    def load() -> Args:
        args, kwargs = pickle.loads(blob)
        return tuple(args), dict(kwargs)

    return load


def check_generated(runner: PairRunner, blobs: Sequence[bytes], *, deadline_ms: int,
                    observe: Observer | None = None) -> PropertyRun:
    """Run every generated input on both versions; stop at a forbidden act or an error."""
    result = ReplayResult()
    deadline = deadline_ms / 1000
    examples = slow = 0
    differences: list[tuple[int, Args, Difference]] = []
    for index, blob in enumerate(blobs):
        load = _loader(blob)
        before = load()
        timed = _timed_run(runner, load, result)
        if timed is None:
            return PropertyRun(result, examples, slow)
        outcomes, seconds = timed
        if seconds["original"] > deadline:
            slow += 1
            continue
        examples += 1
        original, candidate = outcomes["original"], outcomes["candidate"]
        if ends_process(original, candidate):
            result.status = "error"
            result.reason = (f"the candidate tried to end the process ({candidate.exc_type}) "
                             f"on generated input {index}")
            return PropertyRun(result, examples, slow)
        try:
            difference = compare_outcomes(original, candidate)
            if difference is None and observe is not None:
                difference = observe(before, original, candidate)
        except Uncomparable as exc:
            result.status, result.reason = "error", f"generated input {index}: {exc}"
            return PropertyRun(result, examples, slow)
        if difference is None and seconds["candidate"] > deadline:
            again = _timed_run(runner, load, result)
            if again is None:
                return PropertyRun(result, examples, slow)
            if again[1]["candidate"] > deadline >= again[1]["original"]:
                difference = Difference(
                    "deadline",
                    f"each call within the {deadline_ms} ms deadline (the original took "
                    f"{1000 * again[1]['original']:.1f} ms)",
                    f"the candidate took {1000 * again[1]['candidate']:.1f} ms")
        if difference is not None:
            differences.append((index, before, difference))
    _keep_smallest(result, differences)
    if result.status == "mismatch":
        first = result.mismatches[0]
        kinds = sorted({difference.kind for _, _, difference in differences})
        result.reason = (f"property check: {result.mismatch_count} of {examples} generated "
                         f"inputs differ ({', '.join(kinds)}); smallest: input {first['index']}")
    return PropertyRun(result, examples, slow)


def _timed_run(runner: PairRunner, load: Callable[[], Args], result: ReplayResult
               ) -> tuple[dict[str, Any], dict[str, float]] | None:
    outcomes = runner.run(load, result)
    if outcomes is None:
        return None
    return outcomes, dict(runner.seconds)


def _keep_smallest(result: ReplayResult, differences: list[tuple[int, Args, Difference]]
                   ) -> None:
    """Evidence from the failing inputs with the shortest rendering (Hypothesis does not
    shrink here, see :mod:`invariants.strategies`)."""
    ranked = sorted(differences, key=lambda item: (len(call_repr(item[1][0], item[1][1], 2000)),
                                                   item[0]))
    for index, before, difference in ranked:
        kind = "invariant" if difference.kind == "invariant" else "property"
        add_mismatch(result, index, before, difference, kind=kind)
    del result.mismatches[MAX_EVIDENCE:]


IMPURE_NOTE = ("property checks skipped: the policy marks the target impure "
               "(invariants.impure), so it is judged on recorded calls only")
SOURCE_CALLS = 200  # recorded calls the strategies are derived from


def generated_inputs(job: ShadowJob, func: Callable[..., Any],
                     records: Sequence[Any]) -> tuple[list[bytes], list[str]]:
    """The pickled inputs for ``job``'s property check, and notes on what was skipped.

    Called before the candidate exists. Hypothesis is imported here, so a shadow
    that runs no property check does not pay for it; a strategy built from the
    annotations that cannot draw falls back to the corpus alone.
    """
    examples = job.examples
    if job.impure:
        return [], [IMPURE_NOTE]
    if examples <= 0:
        return [], ["property checks skipped: the policy sets properties.examples to 0"]
    seed = job.property_seed
    try:
        from invariants.strategies import call_strategy, generate_inputs

        calls = [record.load_args() for record in records[:SOURCE_CALLS]]
        # Half the budget for one-edit-at-a-time variants, the rest for Hypothesis.
        constants = code_constants(getattr(func, "__code__", None), func.__doc__)
        blobs = _pickled(systematic_calls(calls, examples // 2, constants))
        drawn = examples - len(blobs)
        try:
            blobs += generate_inputs(call_strategy(func, calls), drawn, seed)
        except Exception:
            blobs += generate_inputs(call_strategy(func, calls, annotations=False), drawn, seed)
        return list(dict.fromkeys(blobs)), []
    except Exception as exc:
        return [], [f"property checks not run: {type(exc).__name__}: {str(exc)[:200]}"]


def _pickled(calls: Sequence[Args]) -> list[bytes]:
    out = []
    for call in calls:
        try:
            out.append(pickle.dumps(call, protocol=5))
        except Exception:  # a variant of an object that does not pickle: leave it out
            continue
    return out
