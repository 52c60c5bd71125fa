"""Generated inputs for property checks: Hypothesis strategies derived from a target's calls.

Two sources, mixed in one strategy per call:

- the recorded calls: for every argument slot, values of the same types and
  container shapes as the recorded ones, and variations of the recorded values
  themselves (empty, single, duplicated, sliced, repeated into large inputs,
  one element replaced, boundary integers around the recorded ones, edited
  strings, and strings with one space-separated field replaced, dropped,
  repeated, trimmed at either end, swapped with the next, case-swapped or taken
  from another recorded string);
- the target's type annotations, for the parameters whose annotation resolves
  to a strategy (``Any`` and bare ``object`` do not: anything at all says nothing
  about the inputs). Builtin types and their generics are resolved here, other
  classes by ``hypothesis.strategies.from_type``.

:func:`generate_inputs` runs Hypothesis in the shadow *before* any candidate
code exists: examples are drawn with a fixed seed and no example database, and
each is pickled, so that every version later gets its own fresh copy. Running
the candidate inside Hypothesis instead would mean running Hypothesis's own
machinery (source inspection, frame walking, code object creation) while the
tripwire is armed; drawing first keeps the armed region to our own harness. The
price is that a failing example is not shrunk: the evidence reports the
smallest failing input instead.
"""

from __future__ import annotations

import collections
import itertools
import pickle
import string
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

Call = tuple[tuple[Any, ...], dict[str, Any]]

MAX_POOL = 256  # distinct recorded values kept per slot
MAX_SIZE = 1000  # elements in a generated or reshaped container
MAX_TUPLE = 32  # longer tuples are only sampled, not generated position by position
MAX_DEPTH = 4
# Characters generated strings are made of, besides those of the recorded strings:
# printable ASCII and whitespace, a few non-ASCII letters, a symbol outside the BMP,
# NUL and a line separator.
TEXT_ALPHABET = string.printable + "\x00éßЖ€\u2028\U0001f600"
_TOKEN_EDITS = ("replace", "replace", "drop", "repeat", "chop_head", "chop_tail", "swap", "case")
_RESHAPES = ("empty", "single", "slice", "dup", "double", "repeat", "reverse", "drop", "swap",
             "concat")


def generate_inputs(strategy: SearchStrategy[Call], examples: int, seed: int) -> list[bytes]:
    """Up to ``examples`` distinct pickled calls drawn from ``strategy``, reproducibly."""
    blobs: list[bytes] = []
    seen: set[bytes] = set()

    @hypothesis_seed(seed)
    @settings(max_examples=examples, database=None, deadline=None, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
              print_blob=False, report_multiple_bugs=False)
    @given(strategy)
    def collect(call: Call) -> None:
        try:
            blob = pickle.dumps(call, protocol=5)
        except Exception:  # an annotation strategy made something that does not pickle
            return
        if blob not in seen:
            seen.add(blob)
            blobs.append(blob)

    collect()
    return blobs


def call_strategy(func: Callable[..., Any], calls: Sequence[Call], *,
                  annotations: bool = True) -> SearchStrategy[Call]:
    """Calls of ``func`` laid out like the most common recorded call."""
    positional, keywords = _layout(func, calls)
    names = _positional_names(func)
    hints = _hints(func) if annotations else {}
    matching = [call for call in calls
                if len(call[0]) == positional and tuple(sorted(call[1])) == keywords]
    corpus_slots = [value_strategy([args[i] for args, _ in matching]) for i in range(positional)]
    corpus_keys = {key: value_strategy([kwargs[key] for _, kwargs in matching])
                   for key in keywords}
    from_corpus = st.tuples(st.tuples(*corpus_slots), st.fixed_dictionaries(corpus_keys))
    typed_slots = [_either(_hinted(hints.get(names[i]) if i < len(names) else None),
                           corpus_slots[i]) for i in range(positional)]
    typed_keys = {key: _either(_hinted(hints.get(key)), corpus_keys[key]) for key in keywords}
    if all(a is b for a, b in zip(typed_slots, corpus_slots, strict=True)) and \
            all(typed_keys[key] is corpus_keys[key] for key in keywords):
        return from_corpus.map(_as_call)
    typed = st.tuples(st.tuples(*typed_slots), st.fixed_dictionaries(typed_keys))
    return st.one_of(from_corpus, typed).map(_as_call)


def _either(first: SearchStrategy[Any] | None, second: SearchStrategy[Any]
            ) -> SearchStrategy[Any]:
    return second if first is None else first


def _as_call(pair: tuple[tuple[Any, ...], dict[str, Any]]) -> Call:
    return tuple(pair[0]), dict(pair[1])


def _layout(func: Callable[..., Any], calls: Sequence[Call]) -> tuple[int, tuple[str, ...]]:
    """(positional count, keyword names) of the most common recorded call, else the signature's."""
    if calls:
        counts = collections.Counter((len(args), tuple(sorted(kwargs))) for args, kwargs in calls)
        return counts.most_common(1)[0][0]
    code = getattr(func, "__code__", None)
    required = (code.co_argcount - len(getattr(func, "__defaults__", None) or ())) if code else 0
    return max(required, 0), ()


def _positional_names(func: Callable[..., Any]) -> tuple[str, ...]:
    code = getattr(func, "__code__", None)
    return tuple(code.co_varnames[:code.co_argcount]) if code is not None else ()


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:  # an annotation that does not evaluate here: use the corpus alone
        return {}


def _hinted(hint: Any) -> SearchStrategy[Any] | None:
    if hint is None:
        return None
    try:
        return _from_hint(hint, 0)
    except Exception:  # a hint Hypothesis cannot resolve: the corpus alone then
        return None


def _from_hint(hint: Any, depth: int) -> SearchStrategy[Any] | None:
    """A strategy for annotation ``hint``, or None when it names no particular values.

    Strings are drawn from :data:`TEXT_ALPHABET` rather than through ``from_type``,
    whose full-Unicode tables cost seconds to build in a fresh shadow directory.
    """
    if hint is typing.Any or hint is object or depth > 8:
        return None
    if hint is str:
        return _text(TEXT_ALPHABET, 24)
    if hint is bytes:
        return st.binary(max_size=24)
    if hint is None or hint is type(None):
        return st.none()
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        parts = _all_hinted(args, depth)
        return None if parts is None else st.one_of(parts)
    if origin in (list, set, frozenset) and len(args) == 1:
        inner = _from_hint(args[0], depth + 1)
        if inner is None:
            return None
        return st.lists(inner) if origin is list else st.sets(inner).map(origin)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            inner = _from_hint(args[0], depth + 1)
            return None if inner is None else st.lists(inner).map(tuple)
        parts = _all_hinted(args, depth)
        return None if parts is None else st.tuples(*parts)
    if origin is dict and len(args) == 2:
        key, value = _from_hint(args[0], depth + 1), _from_hint(args[1], depth + 1)
        return None if key is None or value is None else st.dictionaries(key, value)
    if args:
        return None  # another generic: its parameters say nothing Hypothesis would use
    return st.from_type(hint)


def _all_hinted(hints: tuple[Any, ...], depth: int) -> list[SearchStrategy[Any]] | None:
    parts = [_from_hint(hint, depth + 1) for hint in hints]
    return None if any(part is None for part in parts) else [p for p in parts if p is not None]


# -- values -------------------------------------------------------------------------------


def value_strategy(values: Sequence[Any], depth: int = 0) -> SearchStrategy[Any]:
    """Values shaped like ``values``: the same exact types, containers and sizes, varied."""
    groups: dict[type, list[Any]] = {}
    for value in values:
        group = groups.setdefault(type(value), [])
        if len(group) < MAX_POOL * 4:
            group.append(value)
    if not groups:
        return st.nothing()
    return st.one_of([_for_type(tp, _distinct(group), depth) for tp, group in groups.items()])


def _distinct(values: list[Any]) -> list[Any]:
    """The first :data:`MAX_POOL` values with distinct pickles (recorded values repeat)."""
    seen: set[bytes] = set()
    out: list[Any] = []
    for value in values:
        try:
            key = pickle.dumps(value, protocol=5)
        except Exception:
            continue
        if key not in seen:
            seen.add(key)
            out.append(value)
            if len(out) == MAX_POOL:
                break
    return out


def _for_type(tp: type, pool: list[Any], depth: int) -> SearchStrategy[Any]:
    if not pool:
        return st.nothing()
    recorded = st.sampled_from(pool)
    if tp is type(None):
        return st.none()
    if tp is bool:
        return st.booleans()
    if tp is int:
        return _integers(pool)
    if tp is float:
        return st.one_of(st.sampled_from([*pool, 0.0, -0.0]), st.floats())
    if tp is str:
        return _strings(pool)
    if tp is bytes:
        return st.one_of(recorded, st.binary(max_size=2 * max(len(b) for b in pool) + 4))
    if depth >= MAX_DEPTH:
        return recorded
    if tp is tuple:
        return _tuples(pool, depth)
    if tp is list:
        return _lists(pool, depth)
    if tp is dict:
        return _dicts(pool, depth)
    if tp in (set, frozenset):
        elements = value_strategy([item for value in pool for item in value], depth + 1)
        generated = st.sets(elements, max_size=_size(pool)).map(tp)
        return st.one_of(recorded, generated)
    return recorded  # another type: only the recorded values themselves


def _size(pool: list[Any]) -> int:
    return min(MAX_SIZE, 2 * max(len(value) for value in pool) + 4)


def _integers(pool: list[int]) -> SearchStrategy[int]:
    low, high = min(pool), max(pool)
    edges = sorted({edge for value in pool[:64] for edge in (value - 1, value, value + 1)}
                   | {0, 1, -1, low - 1, high + 1})
    span = high - low + 1
    return st.one_of(st.sampled_from(edges),
                     st.integers(min_value=min(low, 0) - span, max_value=high + span),
                     st.integers())


def _strings(pool: list[str]) -> SearchStrategy[str]:
    longest = max(len(text) for text in pool)
    recorded = st.sampled_from(pool)
    alphabet = "".join(sorted(set(TEXT_ALPHABET).union(*pool[:64])))
    tokens = sorted({token for text in pool[:64] for token in text.split()})[:MAX_POOL]
    fresh_token = st.one_of(st.integers(-1, 10**6).map(str), _text(alphabet, 6),
                            *([st.sampled_from(tokens)] if tokens else []))
    spliced = st.builds(_splice, recorded, st.integers(0, longest), st.integers(0, 8),
                        _text(alphabet, 4))
    retokened = st.builds(_retoken, recorded, st.integers(0, 24), fresh_token,
                          st.sampled_from(_TOKEN_EDITS))
    crossed = st.builds(_cross, recorded, recorded, st.integers(0, 24))
    # Field-level edits twice over: structured text (log lines, CSV rows, paths) is
    # checked field by field, and a check dropped for one field shows only there.
    return st.one_of(recorded, _text(alphabet, max(8, longest)), spliced, retokened,
                     retokened, crossed)


def _text(alphabet: str, max_size: int) -> SearchStrategy[str]:
    return st.text(alphabet=st.sampled_from(alphabet), max_size=max_size)


def _splice(text: str, at: int, cut: int, insert: str) -> str:
    at = min(at, len(text))
    return text[:at] + insert + text[at + cut:]


def _retoken(text: str, index: int, token: str, how: str) -> str:
    """``text`` with its ``index``-th space-separated field edited as ``how`` says."""
    parts = text.split(" ")
    index %= len(parts)
    field = parts[index]
    if how == "drop":
        del parts[index]
    elif how == "repeat":
        parts.insert(index, field)
    elif how == "chop_head":
        parts[index] = field[1:]
    elif how == "chop_tail":
        parts[index] = field[:-1]
    elif how == "swap":
        other = (index + 1) % len(parts)
        parts[index], parts[other] = parts[other], field
    elif how == "case":
        parts[index] = field.swapcase()
    else:
        parts[index] = token
    return " ".join(parts)


def _cross(first: str, second: str, index: int) -> str:
    """``first`` with its ``index``-th space-separated field taken from ``second``."""
    left, right = first.split(" "), second.split(" ")
    if index < len(left) and index < len(right):
        left[index] = right[index]
    return " ".join(left)


def _tuples(pool: list[tuple[Any, ...]], depth: int) -> SearchStrategy[tuple[Any, ...]]:
    by_length: dict[int, list[tuple[Any, ...]]] = {}
    for value in pool:
        by_length.setdefault(len(value), []).append(value)
    parts: list[SearchStrategy[tuple[Any, ...]]] = [st.sampled_from(pool)]
    for length, group in by_length.items():
        if length <= MAX_TUPLE:
            parts.append(st.tuples(*[value_strategy([value[i] for value in group], depth + 1)
                                     for i in range(length)]))
    return st.one_of(parts)


def _lists(pool: list[list[Any]], depth: int) -> SearchStrategy[list[Any]]:
    items = list(itertools.islice((item for value in pool for item in value), MAX_POOL * 4))
    recorded = st.sampled_from(pool)
    index = st.integers(0, MAX_SIZE)
    reshaped = st.builds(_reshape, recorded, recorded, index, index,
                         st.sampled_from(_RESHAPES))
    # large inputs get their own branch: they are where a slower algorithm shows
    large = st.builds(_reshape, recorded, recorded, index, index, st.just("repeat"))
    if not items:
        return st.one_of(recorded, st.lists(st.integers(), max_size=4))
    elements = value_strategy(items, depth + 1)
    generated = st.lists(elements, max_size=_size(pool))
    replaced = st.builds(_replace_at, recorded, index, elements)
    return st.one_of(recorded, reshaped, large, generated, replaced)


def _reshape(value: list[Any], other: list[Any], i: int, j: int, how: str) -> list[Any]:
    """A new list made from recorded ones: the sizes and repetitions real inputs reach."""
    n = len(value)
    if how == "empty" or n == 0:
        return []
    i, j = i % n, j % n
    if how == "single":
        return [value[i]]
    if how == "slice":
        return value[min(i, j):max(i, j) + 1]
    if how == "dup":
        return value + value[min(i, j):max(i, j) + 1]
    if how == "double":
        return value + value
    if how == "repeat":
        return value * max(1, MAX_SIZE // n)
    if how == "reverse":
        return value[::-1]
    if how == "drop":
        return value[:i] + value[i + 1:]
    if how == "swap":
        copy = list(value)
        copy[i], copy[j] = copy[j], copy[i]
        return copy
    return (value + other)[:MAX_SIZE]


def _replace_at(value: list[Any], index: int, item: Any) -> list[Any]:
    if not value:
        return [item]
    copy = list(value)
    copy[index % len(copy)] = item
    return copy


def _dicts(pool: list[dict[Any, Any]], depth: int) -> SearchStrategy[dict[Any, Any]]:
    recorded = st.sampled_from(pool)
    layouts = {tuple(value) for value in pool[:64]}
    parts: list[SearchStrategy[dict[Any, Any]]] = [recorded]
    if len(layouts) == 1 and 0 < len(next(iter(layouts))) <= 64:
        # a record-like dict: the same keys, each with values shaped like its own
        keys = next(iter(layouts))
        parts.append(st.fixed_dictionaries({key: value_strategy([value[key] for value in pool],
                                                                depth + 1) for key in keys}))
    keys_seen = [key for value in pool for key in value][:MAX_POOL * 4]
    values_seen = [item for value in pool for item in value.values()][:MAX_POOL * 4]
    if keys_seen:
        parts.append(st.dictionaries(value_strategy(keys_seen, depth + 1),
                                     value_strategy(values_seen, depth + 1),
                                     max_size=_size(pool)))
    parts.append(st.builds(_subdict, recorded, st.integers(0, MAX_SIZE)))
    return st.one_of(parts)


def _subdict(value: dict[Any, Any], keep: int) -> dict[Any, Any]:
    """The first ``keep`` entries (modulo the size), in order."""
    return dict(itertools.islice(value.items(), keep % (len(value) + 1)))
