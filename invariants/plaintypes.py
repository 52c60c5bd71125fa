"""Which arguments a symbolic diff can take: plain literal types, declared or recorded.

Pure. The symbolic diff (:mod:`invariants.symbolic`) asks CrossHair for an input
on which two functions differ, and a difference counts only when it is re-run
concretely from the input read back as a Python literal. So a parameter fits
when its values are plain literals: ``int``, ``float``, ``str``, ``bool``,
``None``, and lists, dicts and tuples of those (a few levels deep).

A parameter's type comes from its annotation when that is such a type;
otherwise it is inferred from the recorded calls (the values each parameter
took, defaults filled in): the union of what was seen, containers merged by
kind (``[1]`` and ``["a"]`` give ``list[int | str]``; tuples of one length keep
their positions, of several lengths become ``tuple[X, ...]``). Inference
describes the inputs seen, not every input the function accepts; the diff
searches inside that description.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Fitted", "Unfitted", "parameter_types"]

PLAIN: tuple[type, ...] = (int, float, str, bool, type(None))
MAX_DEPTH = 3  # containers inside containers inside containers
MAX_ALTERNATIVES = 4  # members of one union
MAX_RECORDS = 1_000  # recorded calls read for inference
MAX_ITEMS = 1_000  # items read of one recorded container
WHAT_FITS = "int, float, str, bool, None, and lists, dicts and tuples of them"

Calls = Iterable[Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]]


@dataclass(frozen=True)
class Fitted:
    """A type for every parameter, by name, each a plain literal type."""

    types: dict[str, Any]


@dataclass(frozen=True)
class Unfitted:
    """Why the arguments do not fit."""

    reason: str


class _Unfit(Exception):
    pass


class _Nothing:
    """The item type of an empty container: it joins into whatever else is seen."""


def parameter_types(func: Callable[..., Any], calls: Calls) -> Fitted | Unfitted:
    """The parameters' plain types, from ``func``'s annotations or the recorded ``calls``.

    ``calls`` yields argument loaders (a recorded call's ``load_args``).
    """
    signature = inspect.signature(func)
    params = list(signature.parameters.values())
    variadic = [p.name for p in params
                if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if variadic:
        return Unfitted(f"variadic parameters ({', '.join(variadic)})")
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # an annotation that names nothing resolvable: infer instead
        hints = {}
    fitted = {p.name: hints[p.name] for p in params
              if p.name in hints and _fits(hints[p.name], 0)}
    missing = [p.name for p in params if p.name not in fitted]
    if not missing:
        return Fitted(fitted)
    try:
        inferred = _infer(signature, missing, calls)
    except _Unfit as exc:
        return Unfitted(str(exc))
    return Fitted({p.name: fitted.get(p.name, inferred.get(p.name)) for p in params})


def _infer(signature: inspect.Signature, names: list[str], calls: Calls) -> dict[str, Any]:
    seen: dict[str, set[Any]] = {name: set() for name in names}
    for count, load in enumerate(calls):
        if count == MAX_RECORDS:
            break
        args, kwargs = load()
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise _Unfit(f"a recorded call does not bind to the signature: {exc}") from exc
        bound.apply_defaults()
        for name in names:
            value = bound.arguments[name]
            try:
                seen[name].add(_type_of(value, 0))
            except _Unfit as exc:
                raise _Unfit(f"parameter {name!r} takes {exc}, not only {WHAT_FITS}") from None
    result: dict[str, Any] = {}
    for name, alternatives in seen.items():
        if not alternatives:
            raise _Unfit(f"parameter {name!r} has no plain annotation and no recorded call "
                         "to infer its type from")
        joined = _join(alternatives, name)
        if _Nothing in _members(joined):
            raise _Unfit(f"parameter {name!r} was only recorded with empty containers")
        result[name] = joined
    return result


def _type_of(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind in PLAIN:
        return kind
    if depth >= MAX_DEPTH or kind not in (list, dict, tuple):
        what = f"{kind.__name__} objects" if kind not in (list, dict, tuple) else \
            f"containers nested more than {MAX_DEPTH} deep"
        raise _Unfit(what)
    if kind is list:
        return _generic(list, _join_items(value, depth))
    if kind is dict:
        return _generic(dict, _join_items(value.keys(), depth),
                        _join_items(value.values(), depth))
    if len(value) <= MAX_ALTERNATIVES:
        return _generic(tuple, *(_type_of(item, depth + 1) for item in value))
    return _generic(tuple, _join_items(value, depth), ...)


def _join_items(items: Iterable[Any], depth: int) -> Any:
    found: set[Any] = set()
    for index, item in enumerate(items):
        if index == MAX_ITEMS:
            break
        found.add(_type_of(item, depth + 1))
    return _join(found, "an item") if found else _Nothing


def _join(alternatives: set[Any], name: str) -> Any:
    """One type for all of ``alternatives``: containers of one kind merged, the rest a union."""
    plain = {alt for alt in alternatives if typing.get_origin(alt) is None}
    lists = [typing.get_args(alt)[0] for alt in alternatives if typing.get_origin(alt) is list]
    dicts = [typing.get_args(alt) for alt in alternatives if typing.get_origin(alt) is dict]
    tuples = [typing.get_args(alt) for alt in alternatives if typing.get_origin(alt) is tuple]
    members = set(plain)
    if lists:
        members.add(_generic(list, _join(set(lists), name)))
    if dicts:
        members.add(_generic(dict, _join({key for key, _ in dicts}, name),
                             _join({value for _, value in dicts}, name)))
    if tuples:
        members.add(_join_tuples(tuples, name))
    if len(members) > 1:
        members.discard(_Nothing)
    if len(members) > MAX_ALTERNATIVES:
        raise _Unfit(f"parameter {name!r} takes more than {MAX_ALTERNATIVES} kinds of value")
    ordered = sorted(members, key=repr)
    return ordered[0] if len(ordered) == 1 else typing.Union[tuple(ordered)]  # noqa: UP007


def _join_tuples(shapes: list[tuple[Any, ...]], name: str) -> Any:
    """Tuples of one length keep their positions; of several, one type for every item."""
    if all(Ellipsis not in shape for shape in shapes) and len({len(s) for s in shapes}) == 1:
        return _generic(tuple, *(_join(set(items), name)
                                 for items in zip(*shapes, strict=True)))
    items = {item for shape in shapes for item in shape if item is not Ellipsis}
    return _generic(tuple, _join(items, name) if items else _Nothing, ...)


def _generic(origin: type, *args: Any) -> Any:
    """``origin[args]`` for arguments known only at run time (``tuple[()]`` for none)."""
    return types.GenericAlias(origin, args)


def _members(hint: Any) -> set[Any]:
    """Every type that occurs in ``hint``, itself included."""
    found = {hint}
    for arg in typing.get_args(hint):
        if arg is not Ellipsis:
            found |= _members(arg)
    return found


def _fits(hint: Any, depth: int) -> bool:
    """Whether an annotation is a plain literal type that CrossHair can generate."""
    if hint in PLAIN or hint is None:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return all(_fits(arg, depth) for arg in args)
    if depth >= MAX_DEPTH:
        return False
    if origin is list:
        return len(args) == 1 and _fits(args[0], depth + 1)
    if origin is dict:
        return len(args) == 2 and _hashable(args[0]) and all(_fits(a, depth + 1) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _fits(args[0], depth + 1)
        return all(_fits(arg, depth + 1) for arg in args)
    return False


def _hashable(hint: Any) -> bool:
    return not any(typing.get_origin(member) in (list, dict) for member in _members(hint))
