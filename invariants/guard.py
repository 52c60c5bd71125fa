"""A guard on the interpreter state that the shadow's own verdict depends on.

The candidate runs in the same interpreter as the code that judges it. A
candidate that rebinds ``json.dumps``, ``time.perf_counter``, ``builtins.len``
or a function of this package could make a wrong result look right, or a slow
one fast. Rebinding a module or class attribute raises no audit event, so the
tripwire cannot see it; this guard can: it remembers the bindings of the
modules the harness relies on (and of the classes defined in them) and lists
every binding that changed.

Everything the returned closures use is bound when they are made, before any
candidate code exists: they look up no global or builtin name at run time, so
rebinding those cannot blind them. The shadow checks after every candidate call
and once more, with closures it holds out of reach, right before it writes its
report; any change turns the report into ``forbidden``.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterable
from typing import Any

# Modules whose code or classes the harness calls after the candidate exists.
HARNESS_MODULES: tuple[str, ...] = (
    "builtins", "abc", "collections", "contextlib", "copyreg", "dataclasses", "datetime",
    "decimal", "enum", "fractions", "functools", "gc", "hashlib", "io", "ipaddress",
    "itertools", "json", "json.decoder", "json.encoder", "json.scanner", "linecache", "math",
    "operator", "os", "os.path", "pathlib", "pickle", "posixpath", "re", "time", "types",
    "uuid", "_thread", "_io", "_json", "_pickle", "_collections", "_functools", "posix",
)
HARNESS_PREFIXES: tuple[str, ...] = ("invariants", "invariants.targets", "snapshots")


def harness_modules(extra: Iterable[str] = ()) -> list[types.ModuleType]:
    """The loaded modules the guard should watch, plus ``extra`` names (the target's)."""
    names = set(HARNESS_MODULES) | set(extra)
    names |= {name for name in sys.modules if name.startswith(HARNESS_PREFIXES)}
    return [sys.modules[name] for name in sorted(names) if name in sys.modules]


def make_guard(modules: list[types.ModuleType]
               ) -> tuple[Callable[[], None], Callable[[], list[str]]]:
    """``(refresh, changes)``: remember the bindings now; list what changed since."""
    _len, _type, _sorted, _zip = len, type, sorted, zip
    _module_type, _heap = types.ModuleType, 1 << 9
    _flags = type.__dict__["__flags__"].__get__
    _class_dict = type.__dict__["__dict__"].__get__
    _dict_copy, _dict_get, _dict_items = dict.copy, dict.get, dict.items
    _proxy_copy, _proxy_get = types.MappingProxyType.copy, types.MappingProxyType.get
    _append = list.append
    missing = object()
    watched: list[tuple[str, object, bool]] = []  # (label, namespace, strict about new keys)
    for module in modules:
        label = module.__name__
        namespace = module.__dict__
        watched.append((label, namespace, label != "builtins"))
        for value in list(namespace.values()):
            if isinstance(value, type) and _flags(value, type) & _heap and \
                    value.__module__ == label:
                watched.append((f"{label}.{value.__qualname__}", _class_dict(value, type), True))
    saved: list[dict[str, object]] = []

    def snapshot(namespace: object) -> dict[str, object]:
        if _type(namespace) is dict:
            return _dict_copy(namespace)  # type: ignore[arg-type]
        return _proxy_copy(namespace)  # type: ignore[arg-type]

    def refresh() -> None:
        saved[:] = [snapshot(namespace) for _, namespace, _ in watched]

    def changes() -> list[str]:
        found: list[str] = []
        for (label, namespace, strict), before in _zip(watched, saved):
            get: Any = _dict_get if _type(namespace) is dict else _proxy_get
            for key, value in _dict_items(before):
                if get(namespace, key, missing) is not value:
                    _append(found, f"{label}.{key}")
            if strict and _len(namespace) != _len(before):  # type: ignore[arg-type]
                for key in _sorted(snapshot(namespace)):
                    if key not in before and \
                            _type(get(namespace, key, missing)) is not _module_type:
                        _append(found, f"{label}.{key} (added)")
        return found

    refresh()
    return refresh, changes
