"""Rare-branch mutants: versions of a function that are wrong only on inputs the calls rarely hold.

Recorded calls can only prove what they reach. A rare-branch mutant keeps the
function's body (the original's, or an equivalent faster one such as a rule's
rewrite) and puts a guard ahead of it that returns a wrong result when the
input meets a condition the recorded calls never or rarely meet::

    def top_k(counts, k):
        if k > 5:            # every recorded call had k == 5
            return []
        ...the original body...

The guards are derived from the function's parameters and the kinds of values
the calls passed in them (:func:`guards`), not written per function:

- ``empty``: an empty string, list, tuple or dict (``not p``);
- ``length``: longer than any call passed (``len(p) > N``);
- ``threshold``: a number above any seen (``p > N``), or a numeric field of a
  sequence's element above any seen (``p and p[-1][2] > N``), or a dict value;
- ``negative``: a negative number, or a negative numeric field, where none was seen;
- ``equals``: a specific number or string never passed (``p == 7919``,
  ``p == 'GET~'``), or a specific value of a categorical string field
  (``p and p[0][3] == 'POST~'``);
- ``key``: a specific key in a dict (``'zz~' in p``).

Each guard comes with a change that makes an argument meet it, so every mutant
is checked here, in this process, before it is used (:func:`rare_mutants`):
it must differ from the original on a *trigger* (a sample call changed to meet
the condition), must agree with it on the sample calls that do not, and the
condition must hold on at most :data:`RARE_SHARE` of all the calls given. The
wrong result is a literal chosen to differ from the original's on the trigger:
the correct result perturbed (one more, one item fewer) or another call's
result, so it has the right type. These are our own mutants, run unjailed, as
in :func:`bench._gate.probe_equivalence`.
"""

from __future__ import annotations

import ast
import builtins
import copy
import dataclasses
import inspect
import math
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench._mutants import Mutant
from invariants.compare import RETURN, Outcome, compare_outcomes
from invariants.replay import call
from invariants.targets import compile_function, make_function

Args = tuple[tuple[Any, ...], dict[str, Any]]

# A condition met by more of the calls than this is not rare; the replay alone catches it.
RARE_SHARE = 0.01
SAMPLE_CALLS = 200  # calls whose values shape the guards
CHECKED_CALLS = 8  # of those, calls that each mutant must be seen to agree on
MAX_LITERAL = 200  # characters of a wrong result written into the mutant
MAX_CATEGORIES = 20  # a string field with at most this many distinct values is categorical
_ELEMENTS = 5_000  # elements of sequence arguments looked at per parameter


@dataclass(frozen=True)
class Guard:
    """A condition on one parameter that the calls rarely meet, and how to meet it."""

    kind: str  # empty | length | threshold | negative | equals | key
    parameter: str
    condition: str  # a Python expression over the function's parameters
    change: Callable[[Any], Any]  # the parameter's value -> one that meets the condition


@dataclass(frozen=True)
class RareMutant(Mutant):
    """A rare-branch mutant, with the evidence that it is wrong only on rare inputs."""

    kind: str = ""
    condition: str = ""
    body: str = "original"  # the body behind the guard: the original's, or rules:<id>
    trigger: str = ""  # the input the mutant was seen to differ on, as a repr
    # that input itself, for checking the mutant again
    trigger_call: Args = dataclasses.field(default=((), {}), compare=False, repr=False)
    met_by: int = 0  # how many of the given calls meet the condition
    calls: int = 0  # how many calls were given


def rare_mutants(fn: Callable[..., Any], calls: Sequence[Args],
                 bodies: Mapping[str, str]) -> list[RareMutant]:
    """Every checked rare-branch mutant of ``fn``: one per guard and body.

    ``calls`` are real calls of ``fn`` (a recorded corpus); ``bodies`` maps a
    label (``original``, ``rules:<id>``) to a source equivalent to ``fn``'s, to put
    the guard ahead of.
    """
    if not calls or not isinstance(fn, types.FunctionType):
        return []
    signature = inspect.signature(fn)
    bound = [_bind(signature, args) for args in calls]
    sample = [b for b in bound[:SAMPLE_CALLS] if b is not None]
    # the original's outcomes on the calls each mutant must agree on, computed once
    checked = [(b, _run(fn, b)) for b in sample[:CHECKED_CALLS]]
    out: list[RareMutant] = []
    for guard in guards(signature, sample):
        test = _condition(guard.condition)
        met = sum(1 for b in bound if b is not None and _meets(test, b))
        if met > RARE_SHARE * len(calls):
            continue
        trigger = _trigger(guard, test, sample)
        if trigger is None:
            continue
        expected = _run(fn, trigger)
        wrong = _wrong_value(expected, [outcome for _, outcome in checked])
        if wrong is None:
            continue
        quiet = [(b, outcome) for b, outcome in checked if not _meets(test, b)]
        for label, body in bodies.items():
            source = _guarded(body, guard.condition, wrong)
            if source is None:
                continue
            mutant = compile_mutant(source, fn)
            if mutant is None or compare_outcomes(expected, _run(mutant, trigger)) is None:
                continue
            if any(compare_outcomes(outcome, _run(mutant, b)) is not None for b, outcome in quiet):
                continue
            where = "" if label == "original" else f" ahead of {label}"
            out.append(RareMutant(
                operator=f"rare_{guard.kind}",
                description=f"if {_short(guard.condition)}: return {_short(wrong)}{where}",
                line=_line_of(source, guard.condition), source=source, kind=guard.kind,
                condition=guard.condition,
                body=label, trigger=_short(repr(trigger.arguments), 300),
                trigger_call=(trigger.args, dict(trigger.kwargs)), met_by=met,
                calls=len(calls)))
    return out


def guards(signature: inspect.Signature,
           calls: Sequence[inspect.BoundArguments]) -> list[Guard]:
    """Guards on each parameter, from the kinds and ranges of the values ``calls`` passed."""
    found: list[Guard] = []
    for name in signature.parameters:
        values = [b.arguments[name] for b in calls if name in b.arguments]
        found.extend(_value_guards(name, name, values))
    return found


def _value_guards(name: str, expr: str, values: list[Any]) -> Iterator[Guard]:
    present = [v for v in values if v is not None]
    if not present:
        return
    kind = _kind(present[0])
    if any(_kind(v) != kind for v in present):
        return
    if kind == "number":
        yield from _number_guards(name, expr, present, lambda _v, new: new)
    elif kind == "str":
        yield from _string_guards(name, expr, present)
    elif kind == "sequence":
        yield from _sequence_guards(name, expr, present)
    elif kind == "dict":
        yield from _dict_guards(name, expr, present)


def _number_guards(name: str, expr: str, values: list[Any],
                   put: Callable[[Any, Any], Any]) -> Iterator[Guard]:
    """Guards on numbers found at ``expr``; ``put(value, number)`` sets the number there."""
    low, high = min(values), max(values)
    if low >= 0:
        yield Guard("negative", name, f"{expr} < 0", lambda v: put(v, -1))
    yield Guard("threshold", name, f"{expr} > {high!r}", lambda v: put(v, high + 1))
    if all(isinstance(v, int) for v in values):
        rare = _unseen_int(low, high, set(values))
        yield Guard("equals", name, f"{expr} == {rare!r}", lambda v: put(v, rare))


def _string_guards(name: str, expr: str, values: list[str]) -> Iterator[Guard]:
    longest = max(len(v) for v in values)
    rare = min(values, key=len) + "~"
    yield Guard("empty", name, f"not {expr}", lambda v: "")
    yield Guard("length", name, f"len({expr}) > {longest}",
                lambda v: v + "x" * (longest + 1 - len(v)))
    if rare not in values:
        yield Guard("equals", name, f"{expr} == {rare!r}", lambda v: rare)


def _sequence_guards(name: str, expr: str, values: list[Any]) -> Iterator[Guard]:
    longest = max(len(v) for v in values)
    yield Guard("empty", name, f"not {expr}", lambda v: type(v)())
    yield Guard("length", name, f"len({expr}) > {longest}",
                lambda v: _lengthen(v, longest + 1))
    elements = [e for v in values for e in v][:_ELEMENTS]
    if not elements:
        return
    kind = _kind(elements[0])
    if any(_kind(e) != kind for e in elements):
        return
    if kind == "number":
        yield from _number_guards(name, f"{expr} and {expr}[-1]", elements,
                                  lambda v, new: _put_element(v, -1, None, new))
    elif kind == "sequence" and len({len(e) for e in elements}) == 1:
        for index in range(len(elements[0])):
            yield from _field_guards(name, expr, index, [e[index] for e in elements])
    elif kind == "dict":
        keys = set.intersection(*(set(e) for e in elements))
        for key in sorted(k for k in keys if isinstance(k, str)):
            yield from _field_guards(name, expr, key, [e[key] for e in elements])


def _field_guards(name: str, expr: str, field: int | str, values: list[Any]) -> Iterator[Guard]:
    """Guards on one field of the elements of a sequence argument."""
    if not values:
        return
    if all(_kind(v) == "number" for v in values):
        # a threshold on the last element, a negative value in the first
        for guard in _number_guards(name, f"{expr} and {expr}[-1][{field!r}]", values,
                                    lambda v, new: _put_element(v, -1, field, new)):
            if guard.kind == "threshold":
                yield guard
        if min(values) >= 0:
            yield Guard("negative", name, f"{expr} and {expr}[0][{field!r}] < 0",
                        lambda v: _put_element(v, 0, field, -1))
    elif all(isinstance(v, str) for v in values) and len(set(values)) <= MAX_CATEGORIES:
        rare = sorted(values)[0] + "~"
        yield Guard("equals", name, f"{expr} and {expr}[0][{field!r}] == {rare!r}",
                    lambda v: _put_element(v, 0, field, rare))


def _dict_guards(name: str, expr: str, values: list[dict[Any, Any]]) -> Iterator[Guard]:
    yield Guard("empty", name, f"not {expr}", lambda v: type(v)())
    keys = {k for v in values for k in v}
    if all(isinstance(k, str) for k in keys):
        rare = min(keys, key=len, default="") + "~"
        sample = next((x for v in values for x in v.values()), 0)
        yield Guard("key", name, f"{rare!r} in {expr}", lambda v: {**v, rare: sample})
    numbers = [x for v in values for x in v.values()][:_ELEMENTS]
    if numbers and all(_kind(x) == "number" for x in numbers):
        high = max(numbers)
        yield Guard("threshold", name, f"{expr} and max({expr}.values()) > {high!r}",
                    lambda v: {**v, next(iter(v), "zz~"): high + 1})


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number" if math.isfinite(value) else "other"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        return "sequence"
    if isinstance(value, dict):
        return "dict"
    return "other"


def _unseen_int(low: int, high: int, seen: set[int]) -> int:
    """An integer no call passed: inside the range seen when one is free, else past it."""
    middle = (low + high) // 2
    for step in range(1, min(high - low, 1000)):
        for candidate in (middle + step, middle - step):
            if low < candidate < high and candidate not in seen:
                return candidate
    return high + 7919


def _lengthen(value: Any, length: int) -> Any:
    if not value:
        return None
    items = list(value) * (length // len(value) + 1)
    return type(value)(items[:length])


def _put_element(value: Any, index: int, field: int | str | None, new: Any) -> Any:
    """``value`` (a list or tuple) with one element, or one field of it, set to ``new``."""
    if not value:
        return None
    items = list(value)
    position = index % len(items)
    element = items[position]
    if field is None:
        items[position] = new
    elif isinstance(element, dict):
        items[position] = {**element, field: new}
    else:
        assert isinstance(field, int)
        fields = list(element)
        fields[field] = new
        items[position] = type(element)(fields)
    return type(value)(items)


def _bind(signature: inspect.Signature, args: Args) -> inspect.BoundArguments | None:
    try:
        return signature.bind(*args[0], **args[1])
    except TypeError:
        return None


def _condition(text: str) -> types.CodeType:
    return compile(text, "<guard>", "eval")


def _meets(test: types.CodeType, bound: inspect.BoundArguments) -> bool:
    try:
        return bool(eval(test, {"__builtins__": builtins}, dict(bound.arguments)))
    except Exception:  # a guard that raises on an input changes the outcome there too
        return True


def _trigger(guard: Guard, test: types.CodeType, sample: Sequence[inspect.BoundArguments]
             ) -> inspect.BoundArguments | None:
    """A sample call with ``guard.parameter`` changed so that the condition holds."""
    for bound in sample[:50]:
        value = bound.arguments.get(guard.parameter)
        if value is None:
            continue
        changed = guard.change(copy.deepcopy(value))
        if changed is None:
            continue
        trigger = copy.copy(bound)
        trigger.arguments = {**bound.arguments, guard.parameter: changed}
        if _meets(test, trigger):
            return trigger
    return None


def _run(fn: Callable[..., Any], bound: inspect.BoundArguments) -> Outcome:
    fresh = copy.deepcopy(bound)
    return call(fn, fresh.args, dict(fresh.kwargs))


def _wrong_value(expected: Outcome, others: Sequence[Outcome]) -> str | None:
    """A short literal that differs from ``expected``'s result: perturbed, or another's."""
    choices: list[Any] = []
    if expected.kind == RETURN:
        choices += _perturbed(expected.value)
    choices += [o.value for o in others if o.kind == RETURN]
    if expected.kind == RETURN:
        choices += [type(expected.value)()] if _kind(expected.value) in (
            "str", "sequence", "dict") else []
    choices.append(None)
    for choice in choices:
        text = repr(choice)
        if len(text) > MAX_LITERAL or not _is_literal(text, choice):
            continue
        if expected.kind != RETURN or type(choice) is not type(expected.value) \
                or choice != expected.value:
            return text
    return None


def _perturbed(value: Any) -> list[Any]:
    kind = _kind(value)
    if kind == "number":
        return [value + 1]
    if kind == "bool":
        return [not value]
    if kind == "str":
        return [value + "x"]
    if kind in ("sequence", "dict") and value:
        items = list(value.items()) if isinstance(value, dict) else list(value)
        return [type(value)(items[:-1]), type(value)(items[:1])]
    return []


def _is_literal(text: str, value: Any) -> bool:
    try:
        return bool(ast.literal_eval(text) == value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


def _guarded(source: str, condition: str, wrong: str) -> str | None:
    """``source``'s function with ``if condition: return wrong`` ahead of its body."""
    tree = ast.parse(source)
    function = next((node for node in tree.body
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
    if function is None:
        return None
    guard = ast.parse(f"if {condition}:\n    return {wrong}\n").body[0]
    first = function.body[0]
    docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
        and isinstance(first.value.value, str)
    function.body.insert(1 if docstring else 0, guard)
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def compile_mutant(source: str, like: Callable[..., Any]) -> types.FunctionType | None:
    """``source`` as a function in ``like``'s place (its globals, defaults, closure), or None
    when it does not fit there."""
    if not isinstance(like, types.FunctionType):
        return None
    try:
        return make_function(compile_function(source, like, filename="<rare mutant>"), like)
    except Exception:  # a body that does not fit the original (closure, defaults): skip it
        return None


def _line_of(source: str, condition: str) -> int:
    """The guard's line in the rendered mutant (1 is the ``def``)."""
    head = f"if {ast.unparse(ast.parse(condition, mode='eval'))}:"
    return next((n for n, line in enumerate(source.splitlines(), 1) if line.strip() == head), 0)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
