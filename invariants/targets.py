"""Targets: naming, resolving and recompiling the functions selfmod may change.

A target is ``module:qualname`` (``demo.logstats:percentile``,
``shop.pricing:Cart.total``). This module is imported by the daemon, the
envelope's policy and the shadow worker, so it lives in the lowest layer that
runs code and depends on nothing but the standard library.

The unit of change is a function's code object. Installing a version means
assigning a new ``__code__`` to the *existing* function object, which is what
makes every reference to it (imports by name, bound methods, callbacks held by
other objects) run the new code, while frames already executing keep the old
code object they started with.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import inspect
import linecache
import sys
import textwrap
import types
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from invariants.errors import TargetError

__all__ = ["Target", "TargetError", "compile_function", "in_scope", "is_protected",
           "make_function", "original_source", "resolve", "sha256_text"]

# selfmod's own code is never a target, whatever a policy says; nor is anything
# loaded under a ``selfmod_`` name (the demo's frozen oracle is).
PROTECTED_MODULE_PATTERNS: tuple[str, ...] = (
    "daemon",
    "daemon.*",
    "envelope",
    "envelope.*",
    "invariants",
    "invariants.*",
    "snapshots",
    "snapshots.*",
    "selfmod_*",
)


@dataclass(frozen=True)
class Target:
    """A parsed ``module:qualname``."""

    module: str
    qualname: str

    @classmethod
    def parse(cls, text: str) -> Target:
        module, sep, qualname = text.partition(":")
        if not sep or not module or not qualname:
            raise TargetError(f"target {text!r} is not of the form module:qualname")
        if "<locals>" in qualname:
            raise TargetError(f"target {text!r} is a nested function; only module-level "
                              "functions and methods can be targets")
        return cls(module, qualname)

    @property
    def name(self) -> str:
        return self.qualname.rpartition(".")[2]

    def __str__(self) -> str:
        return f"{self.module}:{self.qualname}"


def is_protected(module: str) -> bool:
    """True when ``module`` belongs to selfmod itself."""
    return any(fnmatch.fnmatchcase(module, pattern) for pattern in PROTECTED_MODULE_PATTERNS)


def in_scope(target: str, include: Iterable[str], exclude: Iterable[str] = ()) -> bool:
    """Whether ``target`` matches an include glob, no exclude glob, and is not protected."""
    module = target.partition(":")[0]
    if is_protected(module):
        return False
    if not any(fnmatch.fnmatchcase(target, pattern) for pattern in include):
        return False
    return not any(fnmatch.fnmatchcase(target, pattern) for pattern in exclude)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def resolve(target: Target, *, import_module: bool = True) -> types.FunctionType:
    """Return the live function object behind ``target``.

    Static and class methods resolve to their underlying function; anything that
    is not a plain Python function (a builtin, a C function, a property) is refused.
    """
    try:
        module = (importlib.import_module(target.module) if import_module
                  else sys.modules[target.module])
    except Exception as exc:  # an import can raise anything
        raise TargetError(f"cannot import {target.module!r}: {exc}") from exc
    obj: object = module
    for part in target.qualname.split("."):
        namespace = getattr(obj, "__dict__", {})
        if part not in namespace:
            raise TargetError(f"{target} not found: {part!r} is not defined in {obj!r}")
        obj = namespace[part]
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    while isinstance(obj, types.FunctionType) and hasattr(obj, "__wrapped__") and \
            isinstance(obj.__wrapped__, types.FunctionType) and \
            obj.__wrapped__.__qualname__ == obj.__qualname__:
        # functools.wraps: the decorator's wrapper stands in the namespace; the code
        # worth changing is the wrapped function's.
        obj = obj.__wrapped__
    if not isinstance(obj, types.FunctionType):
        raise TargetError(f"{target} is a {type(obj).__name__}, not a Python function")
    return obj


def original_source(func: types.FunctionType | types.CodeType,
                    module_globals: dict[str, Any] | None = None) -> str:
    """The dedented source of ``func`` (or its code) as in its file, decorators included.

    Read through ``linecache`` from the code's own file and first line, and not
    with ``inspect.getsourcelines``: for a code object that one looks for the
    module by scanning every loaded module's path, one ``realpath`` each, and in
    a process whose app threads keep the GIL busy each of those system calls
    waits for it again (30 s, measured, with scipy loaded beside a busy app).
    ``module_globals`` (the function's own by default) lets a loader that keeps
    sources elsewhere (a zip) give them.
    """
    code = func if isinstance(func, types.CodeType) else func.__code__
    if module_globals is None and isinstance(func, types.FunctionType):
        module_globals = func.__globals__
    filename, start = code.co_filename, code.co_firstlineno - 1
    linecache.checkcache(filename)
    lines = linecache.getlines(filename, module_globals)
    if not 0 <= start < len(lines):
        raise TargetError(f"no source for {code.co_qualname}: {filename} line "
                          f"{start + 1} cannot be read")
    try:
        block = inspect.getblock(lines[start:])
    except (SyntaxError, IndentationError) as exc:  # tokenize's complaints
        raise TargetError(f"no source for {code.co_qualname}: {exc}") from exc
    return textwrap.dedent("".join(block))


def compile_function(source: str, func: types.FunctionType, *, filename: str) -> types.CodeType:
    """Compile candidate ``source`` into a code object that can replace ``func.__code__``.

    The source holds exactly one function definition (checked by the static gate
    before this is ever called with untrusted text). Decorators are dropped: they
    were applied once when the original was defined, and the function object that
    carries them stays in place. Free variables must match the original's, because
    the function's closure cells are reused as they are.
    """
    import ast

    tree = ast.parse(source, filename=filename)
    defs = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if len(defs) != 1 or len(tree.body) != 1:
        raise TargetError("candidate must be exactly one function definition")
    fdef = defs[0]
    fdef.decorator_list = []
    freevars = func.__code__.co_freevars
    if freevars:
        # Compile inside a synthetic enclosing function that binds the same names, so
        # they become free variables of the candidate (CPython orders them by name).
        outer = ast.parse(
            "def __selfmod_outer__():\n"
            + "".join(f"    {name} = None\n" for name in freevars)
            + "    pass\n"
        ).body[0]
        assert isinstance(outer, ast.FunctionDef)
        outer.body[-1:] = [fdef]
        tree.body = [outer]
        ast.fix_missing_locations(tree)
    module_code = compile(tree, filename, "exec", dont_inherit=True)
    code = _find_code(module_code, fdef.name)
    if code.co_freevars != freevars:
        raise TargetError(
            f"candidate closes over {code.co_freevars or 'nothing'}, the original over "
            f"{freevars or 'nothing'}; a closure cannot be re-bound in place"
        )
    code = code.replace(co_qualname=func.__code__.co_qualname)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return code


def _find_code(code: types.CodeType, name: str) -> types.CodeType:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            if const.co_name == name:
                return const
            try:
                return _find_code(const, name)
            except TargetError:
                continue
    raise TargetError(f"no code object for function {name!r} in candidate")


def make_function(code: types.CodeType, like: types.FunctionType) -> types.FunctionType:
    """A new function object running ``code`` with ``like``'s globals, defaults and closure."""
    fn = types.FunctionType(code, like.__globals__, like.__name__, like.__defaults__,
                            like.__closure__)
    fn.__kwdefaults__ = like.__kwdefaults__
    fn.__qualname__ = like.__qualname__
    fn.__module__ = like.__module__
    return fn
