"""State a call leaves behind: a cheap fingerprint of what one target function can keep.

A candidate that keeps a cache between calls (a module-level dict it fills with
``setdefault``, a list it appends to, a mutable default argument, an attribute of a
module-level object or of the function itself) can pass differential replay and
then look much faster in the benchmark, which repeats the same inputs. The static
gate refuses direct stores into non-locals; mutation through a method call or a
default is only visible at run time, so the shadow looks for it here.

:class:`StateWatch` fingerprints, for one function, every place such state can
live: each global of the function's module (dunder names aside), the function's
``__dict__``, the contents of its defaults and keyword defaults, and its closure
cells. A fingerprint of a place is its identity plus, for mutable containers
(dict, list, set, bytearray, deque, array) and objects with a ``__dict__`` or
slots (classes included), its length and a hash over a bounded walk of its
contents. The walk reads containers through the builtin base types' C methods
and hashes only exact ``int``/``float``/``str``/``bytes``/``bool``/``None``
values, using identity for everything else, so it never runs an ``__eq__``,
``__hash__``, ``__repr__`` or ``__iter__`` that user code could define. Contents
past the walk's budget are seen only through the length: a change deep inside a
large structure can go unnoticed, which keeps each fingerprint cheap.

The rule (:func:`stateful_difference`): a place the candidate's call changed that
the original's call on the same input did not change means the candidate carries
state; an original that itself counts calls in a global is matched by a
candidate that does the same.

Fingerprinting never raises: a place that cannot be read is "unknown" and is
never reported as changed. It must also raise no audit event while the shadow's
tripwire is armed: reading ``__code__``, ``__defaults__`` or ``__kwdefaults__``
does, so a watch reads them once, when it is made, which must be before the
tripwire is armed (the tuple of defaults can be replaced only by assigning the
audited attribute, which the armed tripwire forbids; its mutable members are
walked on every fingerprint). Everything the walk calls is bound when the watch
is made, so rebinding a builtin later cannot blind it (the shadow's guard reports
such a rebinding anyway).
"""

from __future__ import annotations

import array
import collections
import itertools
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from invariants.compare import Difference

NODE_BUDGET = 512  # objects visited per place, per fingerprint
MAX_DEPTH = 8
BYTES_BUDGET = 4096  # bytes of a bytearray or array hashed (the length covers the rest)
MAX_LISTED = 3  # changes named in one piece of evidence

# (identity, type identity, unit, size, digest); unit is "items", "attributes" or "".
Token = tuple[int, int, str, int, int]
UNKNOWN: Token = (-1, -1, "", -1, -1)
Digest = Callable[[object, list[object]], Token]


class Fingerprint:
    """The tokens of every watched place, and the objects they name kept alive.

    Keeping the walked objects alive means an identity in ``tokens`` cannot be
    reused by a different object before the fingerprint it is compared with is taken.
    """

    __slots__ = ("keep", "tokens")

    def __init__(self, tokens: dict[str, Token], keep: list[object]) -> None:
        self.tokens = tokens
        self.keep = keep


class StateWatch:
    """Fingerprints the state that calls of ``func`` can leave behind.

    Make it before the tripwire is armed (see the module docstring). ``track`` wraps
    one call and fills a mapping of what changed, place -> description::

        watch = StateWatch(func)
        with watch.track() as changed:
            func(*args)
        changed  # {"global _CACHE": "global _CACHE grew from 0 to 1 items"}
    """

    def __init__(self, func: types.FunctionType, *, budget: int = NODE_BUDGET,
                 depth: int = MAX_DEPTH) -> None:
        self._digest = _make_digest(budget, depth)
        self._func = func
        self._name = func.__name__ if type(func.__name__) is str else "function"
        self._namespace: dict[str, Any] | None = None
        self._places: list[tuple[str, Callable[[], object]]] = []
        self._function_dict = _FUNCTION_DICT
        try:
            self._namespace = func.__globals__
            self._places = _argument_places(func)
        except Exception:  # a function the watch cannot read is watched as far as it can
            pass

    def fingerprint(self) -> Fingerprint | None:
        """The state now, or None when it cannot be read at all (unknown)."""
        try:
            tokens: dict[str, Token] = {}
            keep: list[object] = []
            digest = self._digest
            if self._namespace is not None:
                self._add_mapping(tokens, keep, "global ", self._namespace, skip=self._func)
            self._add_mapping(tokens, keep, f"attribute {self._name}.",
                              self._function_dict(self._func), skip=None)
            for label, read in self._places:
                try:
                    tokens[label] = digest(read(), keep)
                except Exception:
                    tokens[label] = UNKNOWN
            return Fingerprint(tokens, keep)
        except Exception:
            return None

    def _add_mapping(self, tokens: dict[str, Token], keep: list[object], prefix: str,
                     namespace: dict[str, Any], skip: object) -> None:
        digest = self._digest
        for name, value in list(dict.items(namespace)):
            if type(name) is not str or (name.startswith("__") and name.endswith("__")):
                continue
            label = prefix + name
            if value is skip:
                tokens[label] = (id(value), id(type(value)), "", 0, 0)
                keep.append(value)
                continue
            try:
                tokens[label] = digest(value, keep)
            except Exception:
                tokens[label] = UNKNOWN

    def changes(self, before: Fingerprint | None, after: Fingerprint | None) -> dict[str, str]:
        """What differs between two fingerprints, place -> description; {} when unknown."""
        try:
            return describe_changes(before, after)
        except Exception:
            return {}

    @contextmanager
    def track(self) -> Iterator[dict[str, str]]:
        """Fingerprint before and after the block; the yielded mapping gets what changed.

        When the block raises, the mapping stays empty (nothing is known).
        """
        changed: dict[str, str] = {}
        before = self.fingerprint()
        yield changed
        changed.update(self.changes(before, self.fingerprint()))


def describe_changes(before: Fingerprint | None, after: Fingerprint | None) -> dict[str, str]:
    """Place -> how it changed, for every place known in both fingerprints that differs."""
    if before is None or after is None:
        return {}
    found: dict[str, str] = {}
    old, new = before.tokens, after.tokens
    for label in sorted(old.keys() | new.keys()):
        first, second = old.get(label), new.get(label)
        if UNKNOWN in (first, second) or first == second:
            continue
        if first is None:
            found[label] = f"{label} was added"
        elif second is None:
            found[label] = f"{label} was deleted"
        elif first[0] != second[0]:
            found[label] = f"{label} was rebound"
        elif first[3] != second[3] and first[2]:
            grew = "grew" if second[3] > first[3] else "shrank"
            found[label] = f"{label} {grew} from {first[3]} to {second[3]} {first[2]}"
        else:
            found[label] = f"{label} changed in place"
    return found


def stateful_difference(original: Mapping[str, str], candidate: Mapping[str, str]
                        ) -> Difference | None:
    """The ``stateful`` difference when the candidate's call changed a place the original's
    call on the same input left alone, else None."""
    extra = [label for label in sorted(candidate) if label not in original]
    if not extra:
        return None
    named = ", ".join(extra[:MAX_LISTED]) + (f" and {len(extra) - MAX_LISTED} more"
                                             if len(extra) > MAX_LISTED else "")
    actual = "; ".join(candidate[label] for label in extra[:MAX_LISTED])
    if len(extra) > MAX_LISTED:
        actual += f"; and {len(extra) - MAX_LISTED} more"
    return Difference("stateful",
                      f"no state kept between calls: the original's call leaves {named} "
                      f"as it was", f"the candidate's call changed it: {actual}")


_FUNCTION_DICT: Callable[[object], dict[str, Any]] = \
    types.FunctionType.__dict__["__dict__"].__get__


def _argument_places(func: types.FunctionType) -> list[tuple[str, Callable[[], object]]]:
    """Readers of the defaults, keyword defaults and closure cells, bound now."""
    code = func.__code__  # audited: this is why the watch is made before arming
    places: list[tuple[str, Callable[[], object]]] = []
    defaults = func.__defaults__ or ()
    positional = code.co_varnames[:code.co_argcount]
    names = positional[len(positional) - len(defaults):]
    for name, value in zip(names, defaults, strict=False):
        places.append((f"default argument {name}", _constant(value)))
    for name, value in sorted((func.__kwdefaults__ or {}).items()):
        places.append((f"keyword default {name}", _constant(value)))
    contents = types.CellType.__dict__["cell_contents"].__get__
    for name, cell in zip(code.co_freevars, func.__closure__ or (), strict=False):
        places.append((f"closure variable {name}", _cell_reader(cell, contents)))
    return places


def _constant(value: object) -> Callable[[], object]:
    return lambda: value


_EMPTY_CELL = object()


def _cell_reader(cell: types.CellType, contents: Callable[[types.CellType], object]
                 ) -> Callable[[], object]:
    def read() -> object:
        try:
            return contents(cell)
        except ValueError:  # an empty cell
            return _EMPTY_CELL

    return read


def _make_digest(budget: int, max_depth: int) -> Digest:
    """The per-place digest, with every name it uses bound now (see the module docstring)."""
    _type, _id, _hash, _len, _issubclass = type, id, hash, len, issubclass
    _tuple, _islice, _bytes, _memoryview = tuple, itertools.islice, bytes, memoryview
    _dict_items, _dict_len = dict.items, dict.__len__
    _list_iter, _list_len = list.__iter__, list.__len__
    _tuple_iter = tuple.__iter__
    _set_iter, _set_len = set.__iter__, set.__len__
    _fset_iter = frozenset.__iter__
    _deque, _deque_iter, _deque_len = collections.deque, collections.deque.__iter__, \
        collections.deque.__len__
    _proxy_items, _proxy_len = types.MappingProxyType.items, types.MappingProxyType.__len__
    _bytearray, _bytearray_len = bytearray, bytearray.__len__
    _array, _array_len = array.array, array.array.__len__
    _type_dict = type.__dict__["__dict__"].__get__
    _type_mro = type.__dict__["__mro__"].__get__
    _type_flags = type.__dict__["__flags__"].__get__
    _function, _function_dict = types.FunctionType, _FUNCTION_DICT
    _getset, _member = types.GetSetDescriptorType, types.MemberDescriptorType
    atoms = frozenset({int, float, complex, str, bytes, bool, type(None)})
    heap, bytes_budget, empty = 1 << 9, BYTES_BUDGET, _EMPTY_CELL

    def instance_state(obj: object, tp: type) -> tuple[dict[str, Any] | None, list[object]]:
        """The instance ``__dict__`` (through its C descriptor) and slot values."""
        found: dict[str, Any] | None = None
        slots: list[object] = []
        looked = False
        for klass in _type_mro(tp, type):
            namespace = _type_dict(klass, type)
            for name, descriptor in _proxy_items(namespace):
                if _type(descriptor) is _member and name != "__weakref__":
                    try:
                        slots.append(descriptor.__get__(obj, tp))
                    except AttributeError:
                        slots.append(empty)
            if not looked and "__dict__" in namespace:
                looked = True
                descriptor = namespace["__dict__"]
                if _type(descriptor) is _getset:
                    value = descriptor.__get__(obj, tp)
                    found = value if _type(value) is dict else None
        return found, slots

    def expand(obj: Any, tp: type, room: int) -> tuple[str, int, list[object]] | None:
        """(unit, size, children) of a container or an object with state, else None."""
        if _issubclass(tp, dict):
            pairs = [part for pair in _islice(_dict_items(obj), room) for part in pair]
            return "items", _dict_len(obj), pairs
        if _issubclass(tp, list):
            return "items", _list_len(obj), list(_islice(_list_iter(obj), room))
        if _issubclass(tp, tuple):
            return "", 0, list(_islice(_tuple_iter(obj), room))
        if _issubclass(tp, (set, frozenset)):
            if _issubclass(tp, set):
                return "items", _set_len(obj), list(_islice(_set_iter(obj), room))
            return "", 0, list(_islice(_fset_iter(obj), room))
        if _issubclass(tp, _deque):
            return "items", _deque_len(obj), list(_islice(_deque_iter(obj), room))
        if _issubclass(tp, (_bytearray, _array)):
            size = _bytearray_len(obj) if _issubclass(tp, _bytearray) else _array_len(obj)
            with _memoryview(obj) as view, view.cast("B") as raw:
                return "items", size, [_bytes(raw[:bytes_budget])]
        if _issubclass(tp, type):
            if not _type_flags(obj, type) & heap:
                return None
            pairs = [part for pair in _islice(_proxy_items(_type_dict(obj, type)), room)
                     for part in pair]
            return "attributes", _proxy_len(_type_dict(obj, type)), pairs
        if tp is _function:
            attrs = _function_dict(obj)
            pairs = [part for pair in _islice(_dict_items(attrs), room) for part in pair]
            return "attributes", _dict_len(attrs), pairs
        if not _type_flags(tp, type) & heap:
            return None
        state, slots = instance_state(obj, tp)
        pairs = [] if state is None else \
            [part for pair in _islice(_dict_items(state), room) for part in pair]
        return "attributes", (0 if state is None else _dict_len(state)) + _len(slots), \
            pairs + slots

    def digest(root: object, keep: list[object]) -> Token:
        root_type = _type(root)
        unit, size = "", 0
        parts: list[int] = []
        seen: set[int] = set()
        stack: list[tuple[object, int]] = [(root, 0)]
        nodes = 0
        while stack and nodes < budget:
            obj, level = stack.pop()
            nodes += 1
            tp = _type(obj)
            parts.append(_id(tp))
            if tp in atoms:
                parts.append(_hash(obj))
                continue
            key = _id(obj)
            parts.append(key)
            if key in seen or level >= max_depth:
                continue
            seen.add(key)
            keep.append(obj)
            expanded = expand(obj, tp, budget - nodes)
            if expanded is None:
                continue
            if obj is root:
                unit, size = expanded[0], expanded[1]
            parts.append(expanded[1])
            parts.append(_len(expanded[2]))
            stack.extend((child, level + 1) for child in reversed(expanded[2]))
        if stack:
            parts.append(-1)  # cut at the budget: the walk covered a prefix
        return (_id(root), _id(root_type), unit, size, _hash(_tuple(parts)))

    return digest
