"""Systematic variants of a recorded call: one argument, one field, one boundary at a time.

Random generation finds a difference that hides behind one particular field of
a structured input only by luck: a check dropped for the closing bracket of a log
line's timestamp shows only when that one field loses that one character. So
part of a property check's budget goes to inputs built the way a tester would:
a recorded call with a single argument changed in a single way, in an order that
covers every field with the cheapest edits first.

- a string of space-separated fields: each field replaced by ``x``, then with its
  last character cut, then its first, case-swapped, dropped;
- a plain string: empty, without its first or last character, case-swapped, doubled,
  and each short string constant of the target's code;
- an integer: first the boundaries of the integer constants in the target's own
  code, largest first (``x >= 500`` is tested at 499, 500 and 501), then one
  less, one more, zero, minus one, negated; a float: negated, ``0.0``, ``-0.0``,
  NaN, infinity; a boolean: flipped;
- a list: empty, its first element alone, with its first element repeated,
  reversed, repeated into a large list, cycled to the lengths at the code's
  integer constants (one less, equal, one more), and with its first element
  replaced by each variant of that element;
- a tuple: each position replaced by each of its variants;
- a dict: empty, and without each of its first keys.
"""

from __future__ import annotations

import itertools
import math
import types
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from invariants.canonical import fingerprint

Call = tuple[tuple[Any, ...], dict[str, Any]]

MAX_SIZE = 1000
MAX_DEPTH = 3
# "x" in a field first (it fails every check on that field at once, so a dropped
# check shows), then each end trimmed (startswith / endswith checks), then the rest.
_FIELD_EDITS = ("replace", "chop_tail", "chop_head", "case", "drop")
MAX_CONSTANTS = 16


@dataclass(frozen=True)
class Constants:
    """Literals of the target's code: where its comparisons and arithmetic have edges."""

    ints: tuple[int, ...] = ()  # largest magnitude first; -1, 0 and 1 left out
    strs: tuple[str, ...] = ()


def code_constants(code: types.CodeType | None, doc: str | None = None) -> Constants:
    """The integer and short string constants of ``code`` and the code nested in it."""
    ints: set[int] = set()
    strs: list[str] = []
    stack = [code] if code is not None else []
    while stack:
        current = stack.pop()
        consts = list(current.co_consts)
        # `x in ("GET", "HEAD")` keeps its literals in one folded tuple or frozenset
        consts += [item for const in current.co_consts if type(const) in (tuple, frozenset)
                   for item in const]
        for const in consts:
            if isinstance(const, types.CodeType):
                stack.append(const)
            elif type(const) is int and abs(const) > 1 and const.bit_length() <= 64:
                ints.add(const)
            elif type(const) is str and const != doc and 0 < len(const) <= 32 and \
                    const not in strs:
                strs.append(const)
    ordered = sorted(ints, key=lambda value: (-abs(value), value))
    return Constants(tuple(ordered[:MAX_CONSTANTS]), tuple(strs[:MAX_CONSTANTS]))


def systematic_calls(calls: Sequence[Call], limit: int,
                     constants: Constants = Constants()) -> list[Call]:
    """Up to ``limit`` calls: the first recorded call with one argument varied at a time."""
    if not calls or limit <= 0:
        return []
    args, kwargs = calls[0]
    per_slot: list[Iterator[Call]] = []
    for index, value in enumerate(args):
        per_slot.append(_with_arg(args, kwargs, index, variants(value, constants)))
    for key, value in kwargs.items():
        per_slot.append(_with_kwarg(args, kwargs, key, variants(value, constants)))
    return list(itertools.islice(_round_robin(per_slot), limit))


def _with_arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int,
              values: Iterable[Any]) -> Iterator[Call]:
    for value in values:
        yield (*args[:index], value, *args[index + 1:]), dict(kwargs)


def _with_kwarg(args: tuple[Any, ...], kwargs: dict[str, Any], key: str,
                values: Iterable[Any]) -> Iterator[Call]:
    for value in values:
        yield tuple(args), {**kwargs, key: value}


def _round_robin(iterators: list[Iterator[Any]]) -> Iterator[Any]:
    active = list(iterators)
    while active:
        for iterator in list(active):
            try:
                yield next(iterator)
            except StopIteration:
                active.remove(iterator)


def variants(value: Any, constants: Constants = Constants(), depth: int = 0) -> list[Any]:
    """Single edits of ``value``, cheapest and most telling first; none repeat ``value``."""
    tp = type(value)
    if depth > MAX_DEPTH:
        return []
    if tp is bool:
        found: list[Any] = [not value]
    elif tp is int:
        found = [edge for const in constants.ints for edge in (const - 1, const + 1, const)]
        found += [value - 1, value + 1, 0, -1, -value]
    elif tp is float:
        found = [-value, 0.0, -0.0, math.nan, math.inf]
    elif tp is str:
        found = _string_variants(value) + list(constants.strs)
    elif tp is list:
        found = _list_variants(value, constants, depth)
    elif tp is tuple:
        found = _tuple_variants(value, constants, depth)
    elif tp is dict:
        found = [{}] + [{k: v for k, v in value.items() if k != key}
                        for key in itertools.islice(value, 8)]
    else:
        found = []
    return _distinct_from(value, found)


def _string_variants(text: str) -> list[str]:
    fields = text.split(" ")
    if len(fields) < 2:
        return ["", text[1:], text[:-1], text.swapcase(), text + text]
    out = []
    for how in _FIELD_EDITS:
        for index, field in enumerate(fields):
            edited = list(fields)
            if how == "chop_tail":
                edited[index] = field[:-1]
            elif how == "chop_head":
                edited[index] = field[1:]
            elif how == "replace":
                edited[index] = "x"
            elif how == "case":
                edited[index] = field.swapcase()
            else:
                del edited[index]
            out.append(" ".join(edited))
    return out


def _list_variants(items: list[Any], constants: Constants, depth: int) -> list[Any]:
    if not items:
        return []
    out: list[Any] = [[], items[:1], [items[0], *items], items[::-1],
                      (items * max(1, MAX_SIZE // len(items)))[:MAX_SIZE]]
    sizes = [size for const in constants.ints[:3] for size in (const - 1, const, const + 1)
             if 1 < size <= MAX_SIZE + 1]
    out += [list(itertools.islice(itertools.cycle(items), size)) for size in sizes]
    out += [[element, *items[1:]] for element in variants(items[0], constants, depth + 1)]
    return out


def _tuple_variants(value: tuple[Any, ...], constants: Constants, depth: int) -> list[Any]:
    per_position = [[(*value[:i], element, *value[i + 1:]) for element in
                     variants(item, constants, depth + 1)] for i, item in enumerate(value)]
    return list(_round_robin([iter(position) for position in per_position]))


def _distinct_from(value: Any, found: list[Any]) -> list[Any]:
    """Drop variants equal to ``value`` (or to an earlier one), type-strictly."""
    seen = {fingerprint(value)}
    out = []
    for item in found:
        key = fingerprint(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out
