"""Probes: intercept every call of a live function without replacing the function object.

A probe installs a *trampoline* code object on the function: it collects the
call's arguments and hands them to a handler together with an "inner" function
that runs the code the function had before. Because the function object stays
the same, every existing reference (imports by name, bound methods, callbacks)
goes through the probe, and removing it restores the previous code object.

The trampoline refers to its handler as a code constant, so no name is added to
the target module's namespace.
"""

from __future__ import annotations

import threading
import types
import warnings
from collections.abc import Callable
from typing import Any

from daemon.errors import SwapError
from invariants.targets import make_function

Handler = Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any]], Any]

_PLACEHOLDER = "__selfmod_probe_handler__"


def _trampoline_code(like: types.CodeType, dispatch: Callable[..., Any]) -> types.CodeType:
    freevars = like.co_freevars
    body = f"    return {_PLACEHOLDER!r}(args, kwargs)\n"
    if freevars:
        # The function's closure is reused as it is, so the trampoline must have the same
        # free variables (CPython orders them by name); referencing them makes them free.
        src = ("def __outer__():\n"
               + "".join(f"    {name} = None\n" for name in freevars)
               + "    def __trampoline__(*args, **kwargs):\n"
               + f"        ({', '.join(freevars)},)\n"
               + "    " + body)
    else:
        src = "def __trampoline__(*args, **kwargs):\n" + body
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # "'str' object is not callable"
        module = compile(src, like.co_filename, "exec", dont_inherit=True)
    code = _find(module, "__trampoline__")
    consts = tuple(dispatch if c == _PLACEHOLDER else c for c in code.co_consts)
    return code.replace(co_consts=consts, co_name=like.co_name, co_qualname=like.co_qualname,
                        co_firstlineno=like.co_firstlineno)


def _find(code: types.CodeType, name: str) -> types.CodeType:
    stack = [code]
    while stack:
        for const in stack.pop().co_consts:
            if isinstance(const, types.CodeType):
                if const.co_name == name:
                    return const
                stack.append(const)
    raise SwapError(f"internal: no {name} in trampoline")


class Probe:
    """A handler installed around one live function; ``remove()`` restores its code."""

    def __init__(self, func: types.FunctionType, handler: Handler,
                 lock: threading.Lock | None = None) -> None:
        self.func = func
        self._lock = lock or threading.Lock()
        self._inner_code = func.__code__
        inner = make_function(self._inner_code, func)

        def dispatch(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            return handler(inner, args, kwargs)

        self._code = _trampoline_code(self._inner_code, dispatch)
        self.installed = False

    def install(self) -> None:
        with self._lock:
            if self.func.__code__ is not self._inner_code:
                raise SwapError(f"{self.func.__qualname__} changed before the probe was installed")
            self.func.__code__ = self._code
            self.installed = True

    def remove(self) -> None:
        """Put the previous code back, unless something else replaced the probe meanwhile."""
        with self._lock:
            if self.installed and self.func.__code__ is self._code:
                self.func.__code__ = self._inner_code
            self.installed = False
