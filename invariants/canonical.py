"""A canonical, hostile-proof view of Python values: tokens, fingerprints, aliasing.

Two outcomes are equal when their token streams are equal. A token is a tuple of
exact ``str``/``int``/``bytes``, so comparing tokens never runs user code; the walk
that produces them never calls a method that a returned object could override
(``__eq__``, ``__repr__``, ``__iter__``, ``__getattribute__``, ``__class__``…):
containers are read through the builtin base type's own C methods, instances of
Python classes through their ``__dict__`` and slot descriptors, found by walking
the MRO's class dictionaries directly.

The rules that make equality type-strict:

- the exact type is part of every token, so ``1``, ``1.0`` and ``True`` differ, and
  so do a list and a list subclass;
- floats are compared by ``float.hex``: every NaN equals every NaN, ``-0.0`` and
  ``0.0`` differ;
- dicts compare in iteration order; sets by the sorted fingerprints of their
  elements;
- a mutable object met twice is emitted as a back-reference, so ``[row, row]`` and
  ``[row, row.copy()]`` differ (and cycles terminate);
- objects of C types that are not known containers are compared by their repr,
  which is C code, with memory addresses blanked.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import hashlib
import ipaddress
import pathlib
import re
import types
import uuid
from collections.abc import Callable, Iterator
from typing import Any

Token = tuple[Any, ...]

MAX_DEPTH = 1000
MAX_TOKENS = 2_000_000
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_HEAPTYPE = 1 << 9

# Value types from the standard library whose repr is complete and trusted.
_TRUSTED_REPR: frozenset[type] = frozenset({
    decimal.Decimal, fractions.Fraction, datetime.date, datetime.datetime, datetime.time,
    datetime.timedelta, datetime.timezone, uuid.UUID, pathlib.PurePosixPath,
    pathlib.PureWindowsPath, pathlib.PosixPath, pathlib.WindowsPath,
    ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network,
    ipaddress.IPv6Network, re.Pattern,
})
ATOMS: frozenset[type] = frozenset({int, bool, str, bytes, type(None), type(...),
                                     type(NotImplemented)})
# Objects whose identity is observable behaviour (mutating one shows through another).
_IDENTITY_BASES: tuple[type, ...] = (list, dict, set, bytearray, collections.deque)

_type_dict = type.__dict__["__dict__"].__get__
_type_mro = type.__dict__["__mro__"].__get__
_type_qualname = type.__dict__["__qualname__"].__get__
_type_module = type.__dict__["__module__"].__get__
_type_flags = type.__dict__["__flags__"].__get__
_exc_args = BaseException.__dict__["args"].__get__
_DEQUE_MAXLEN = collections.deque.__dict__["maxlen"].__get__
_DEFAULT_FACTORY = collections.defaultdict.__dict__["default_factory"].__get__


class Uncomparable(Exception):
    """A value is too deep or too large to compare; equality cannot be established."""


def type_name(tp: type) -> str:
    """``module.qualname`` of a type (bare ``qualname`` for builtins), read without user code."""
    module = _type_module(tp, type)
    qualname = _type_qualname(tp, type)
    return qualname if module == "builtins" else f"{module}.{qualname}"


def _instance_dict(obj: object, tp: type) -> dict[str, Any] | None:
    """The instance ``__dict__`` through its C getset descriptor, or None."""
    for klass in _type_mro(tp, type):
        descriptor = _type_dict(klass, type).get("__dict__")
        if descriptor is None:
            continue
        if type(descriptor) is types.GetSetDescriptorType:
            value = descriptor.__get__(obj, tp)
            return value if type(value) is dict else None
        return None  # a class defines its own __dict__ attribute: not trusted
    return None


def _slots(obj: object, tp: type) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for klass in _type_mro(tp, type):
        for name, descriptor in _type_dict(klass, type).items():
            if type(descriptor) is types.MemberDescriptorType and name not in seen:
                seen.add(name)
                try:
                    found.append((name, descriptor.__get__(obj, tp)))
                except AttributeError:
                    found.append((name, _UNSET))
    return sorted(found, key=lambda item: item[0])


class _Unset:
    pass


_UNSET = _Unset()


def _static_base(tp: type) -> type:
    """The first C-implemented type in the MRO (``object`` for plain classes)."""
    for klass in _type_mro(tp, type):
        if not _type_flags(klass, type) & _HEAPTYPE:
            return klass  # type: ignore[no-any-return]
    return object


def _c_repr(obj: object, base: type, limit: int = 4096) -> str:
    text = base.__repr__(obj)  # type: ignore[call-arg]
    if type(text) is not str:
        return "<repr failed>"
    return _ADDRESS.sub("0x?", text[:limit])


def _float(value: float) -> str:
    return "nan" if value != value else value.hex()


def _is_identity_object(obj: object, tp: type) -> bool:
    if issubclass(tp, _IDENTITY_BASES):
        return True
    return bool(_type_flags(tp, type) & _HEAPTYPE) and not issubclass(tp, (tuple, frozenset,
                                                                          BaseException))


def tokens(value: object, *, max_depth: int = MAX_DEPTH,
           max_tokens: int = MAX_TOKENS) -> Iterator[Token]:
    """The canonical token stream of ``value``; raises :class:`Uncomparable` past the bounds."""
    memo: dict[int, int] = {}
    keep: list[object] = []  # keeps memoised objects alive so their ids stay unique
    stack: list[tuple[object, int]] = [(value, 0)]
    emitted = 0
    while stack:
        obj, depth = stack.pop()
        if depth > max_depth:
            raise Uncomparable(f"value nested deeper than {max_depth}")
        emitted += 1
        if emitted > max_tokens:
            raise Uncomparable(f"value has more than {max_tokens} parts")
        if obj is _UNSET:
            yield ("unset",)
            continue
        tp = type(obj)
        if tp in ATOMS:
            yield (type_name(tp), obj) if tp is not type(None) else ("None",)
            continue
        if tp is float:
            yield ("float", _float(obj))  # type: ignore[arg-type]
            continue
        if tp is complex:
            yield ("complex", _float(obj.real), _float(obj.imag))  # type: ignore[attr-defined]
            continue
        if _is_identity_object(obj, tp):
            key = id(obj)
            if key in memo:
                yield ("ref", memo[key])
                continue
            memo[key] = len(memo)
            keep.append(obj)
        children: list[object] = []
        head = describe_node(obj, tp, children)
        yield head
        stack.extend((child, depth + 1) for child in reversed(children))


def describe_node(obj: Any, tp: type, children: list[object]) -> Token:
    """The head token of a non-atomic value; appends the values to walk after it.

    Never runs a method that the value's class could override.
    """
    name = type_name(tp)
    if issubclass(tp, type):
        return ("class", type_name(obj))
    if tp in (types.FunctionType, types.BuiltinFunctionType):
        return ("callable", name, _callable_name(obj))
    if tp is types.MethodType:
        children.extend((obj.__func__, obj.__self__))
        return ("method",)
    if tp is types.ModuleType:
        module_name = type(obj).__dict__["__dict__"].__get__(obj).get("__name__")
        return ("module", module_name if type(module_name) is str else "?")
    if tp in _TRUSTED_REPR:
        return ("value", name, repr(obj))
    if issubclass(tp, BaseException):
        children.extend(_exc_args(obj))
        return ("exception", name, len(_exc_args(obj)))
    heap = bool(_type_flags(tp, type) & _HEAPTYPE)
    head = _builtin_family(obj, tp, name, children)
    if head is None and not heap:
        return _opaque(obj, tp, name, children)
    if head is None:
        static = _static_base(tp)
        head = (name, "object", _c_repr(obj, static) if static is not object else "")
    if not heap:
        return head
    extra = _instance_dict(obj, tp)
    if extra is not None:
        attrs = sorted(extra.items(), key=lambda item: fingerprint(item[0]))
        head += ("attrs", len(attrs))
        for key, item in attrs:
            children.extend((key, item))
    slots = _slots(obj, tp)
    if slots:
        head += ("slots", tuple(slot for slot, _ in slots))
        children.extend(item for _, item in slots)
    return head


def _builtin_family(obj: Any, tp: type, name: str, children: list[object]) -> Token | None:
    """Content of builtin containers and scalars (and their subclasses) via the base's C code."""
    if issubclass(tp, str):
        return (name, "str", str.__str__(obj))
    if issubclass(tp, int):
        return (name, "num", int.__int__(obj))
    if issubclass(tp, float):
        return (name, "num", _float(float.__float__(obj)))
    if issubclass(tp, (bytes, bytearray)):
        return (name, "bytes", bytes(memoryview(obj)))
    if issubclass(tp, (list, tuple)):
        items = list(list.__iter__(obj) if issubclass(tp, list) else tuple.__iter__(obj))
        children.extend(items)
        return (name, "seq", len(items))
    if issubclass(tp, collections.deque):
        items = list(collections.deque.__iter__(obj))
        children.extend(items)
        return (name, "deque", len(items), _DEQUE_MAXLEN(obj))
    if issubclass(tp, dict):
        pairs = list(collections.OrderedDict.items(obj) if issubclass(tp, collections.OrderedDict)
                     else dict.items(obj))
        for key, item in pairs:
            children.extend((key, item))
        if issubclass(tp, collections.defaultdict):
            children.append(_DEFAULT_FACTORY(obj))
            return (name, "map", len(pairs), "default_factory")
        return (name, "map", len(pairs))
    if issubclass(tp, (set, frozenset)):
        iterate = set.__iter__ if issubclass(tp, set) else frozenset.__iter__
        return (name, "set", tuple(sorted(fingerprint(item) for item in iterate(obj))))
    if issubclass(tp, range):
        return (name, "range", obj.start, obj.stop, obj.step)
    return None


def _opaque(obj: Any, tp: type, name: str, children: list[object]) -> Token:
    """A C type we do not know: walk what its (C) pickling support exposes, else its repr."""
    try:
        reduced = tp.__reduce_ex__(obj, 4)  # type: ignore[call-arg]
    except Exception:
        return (name, "opaque", _c_repr(obj, tp))
    children.append(reduced)
    return (name, "reduced")


def _callable_name(obj: Any) -> str:
    module = obj.__module__ if type(obj.__module__) is str else "?"
    qualname = obj.__qualname__ if type(obj.__qualname__) is str else "?"
    return f"{module}.{qualname}"


def same(a: object, b: object) -> bool:
    """Type-strict structural equality; never calls a method the values could override."""
    sentinel: Token = ("<end>",)
    left, right = tokens(a), tokens(b)
    try:
        while True:
            x, y = next(left, sentinel), next(right, sentinel)
            if x != y:
                return False
            if x is sentinel:
                return True
    except RecursionError as exc:
        raise Uncomparable("value nested too deeply") from exc


def fingerprint(value: object) -> str:
    """A sha256 over the token stream: equal fingerprints mean equal values, in any process."""
    digest = hashlib.sha256()
    try:
        for token in tokens(value):
            digest.update(repr(token).encode("utf-8", "backslashreplace"))
            digest.update(b"\x00")
    except RecursionError as exc:
        raise Uncomparable("value nested too deeply") from exc
    return digest.hexdigest()


def alias_paths(result: object, args: tuple[Any, ...], kwargs: dict[str, Any],
                *, budget: int = 10_000) -> tuple[tuple[str, str], ...]:
    """Where the result (or a part of it) *is* an argument (or a part of one).

    Returns ``(result_path, argument_path)`` pairs, e.g. ``("result", "args[0]")``
    when a function returns the list it was given. Only objects whose identity is
    observable (mutable containers, instances of Python classes) count.
    """
    owners: dict[int, str] = {}
    roots = [(f"args[{i}]", arg) for i, arg in enumerate(args)]
    roots += [(f"kwargs[{key!r}]", arg) for key, arg in kwargs.items()]
    for path, obj in _walk_paths(roots, budget):
        owners.setdefault(id(obj), path)
    pairs = [(path, owners[id(obj)]) for path, obj in _walk_paths([("result", result)], budget)
             if id(obj) in owners]
    return tuple(pairs)


def _walk_paths(roots: list[tuple[str, object]], budget: int) -> Iterator[tuple[str, object]]:
    """Identity-bearing objects reachable from ``roots`` with their paths, breadth first."""
    queue = collections.deque(roots)
    seen: set[int] = set()
    keep: list[object] = []
    while queue and budget > 0:
        path, obj = queue.popleft()
        tp = type(obj)
        if tp in ATOMS or tp in (float, complex):
            continue
        budget -= 1
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        keep.append(obj)
        if _is_identity_object(obj, tp):
            yield path, obj
        queue.extend(_children(path, obj, tp))


def _children(path: str, obj: Any, tp: type) -> list[tuple[str, object]]:
    if issubclass(tp, (list, tuple, collections.deque)):
        base: Callable[[Any], Iterator[Any]] = (
            list.__iter__ if issubclass(tp, list) else
            tuple.__iter__ if issubclass(tp, tuple) else collections.deque.__iter__)
        return [(f"{path}[{i}]", item) for i, item in enumerate(base(obj))]
    if issubclass(tp, dict):
        return [(f"{path}[{_key_repr(key)}]", item) for key, item in dict.items(obj)]
    if issubclass(tp, (set, frozenset)):
        iterate: Callable[[Any], Iterator[Any]] = set.__iter__ if issubclass(tp, set) \
            else frozenset.__iter__
        return [(f"{path}{{}}", item) for item in iterate(obj)]
    if _type_flags(tp, type) & _HEAPTYPE and not issubclass(tp, BaseException):
        attrs = _instance_dict(obj, tp) or {}
        found = [(f"{path}.{key}", item) for key, item in attrs.items() if type(key) is str]
        return found + [(f"{path}.{name}", item) for name, item in _slots(obj, tp)]
    return []


def _key_repr(key: object) -> str:
    if type(key) is int and key.bit_length() > 128:
        return "<int>"
    if type(key) in (str, int, bool, bytes, float) or key is None:
        text = repr(key)
        return text if len(text) <= 40 else text[:39] + "…"
    return f"<{type_name(type(key))}>"
