"""Hot-swap: install a version's code into the live function object, and take it out again.

The swap is one attribute assignment (``func.__code__ = code``) under a lock,
which is atomic with respect to other Python threads: a call that starts after
it runs the new code, a call already running finishes on the code object its
frame holds. Every reference to the function sees the change, because the
function object itself is never replaced. The original code object is kept for
as long as the daemon runs, so a rollback is the same single assignment.
"""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass

from daemon.errors import SwapError
from daemon.probe import Handler, Probe
from daemon.targets import Target, compile_function, original_source, resolve


@dataclass(frozen=True)
class Installed:
    """A version in force on a live function."""

    target: str
    version: str
    code: types.CodeType
    previous_version: str  # "" for the original
    previous_code: types.CodeType
    pause_seconds: float


class SwapManager:
    """Owns every code replacement the daemon makes in the live process."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self.lock = threading.Lock()  # shared with probes: one writer of __code__ at a time
        self._originals: dict[str, tuple[types.FunctionType, types.CodeType]] = {}
        self._sources: dict[str, str] = {}
        self._active: dict[str, Installed] = {}

    def function(self, target: str) -> types.FunctionType:
        """The live function for ``target``; its original code is remembered on first sight."""
        known = self._originals.get(target)
        if known is not None:
            return known[0]
        func = resolve(Target.parse(target))
        if not isinstance(func.__code__, types.CodeType):
            raise SwapError(f"{target} has no Python code object to replace")
        self._originals[target] = (func, func.__code__)
        return func

    def original_source(self, target: str) -> str:
        """The source of the original code, read once (the live code may be a version)."""
        if target not in self._sources:
            self.function(target)
            self._sources[target] = original_source(self._originals[target][1])
        return self._sources[target]

    def compile(self, target: str, source: str, version: str) -> types.CodeType:
        """Compile a validated version for ``target`` (raises SwapError when it cannot fit)."""
        func = self.function(target)
        try:
            return compile_function(source, func, filename=f"<selfmod {target} {version[:12]}>")
        except (SyntaxError, ValueError) as exc:
            raise SwapError(f"{target}: version {version[:12]} does not compile: {exc}") from exc
        except Exception as exc:
            raise SwapError(f"{target}: version {version[:12]} cannot be installed: {exc}") from exc

    def install(self, target: str, version: str, code: types.CodeType) -> Installed:
        func = self.function(target)
        previous = self._active.get(target)
        with self.lock:
            before = self._clock()
            previous_code = func.__code__
            func.__code__ = code
            pause = self._clock() - before
        installed = Installed(target, version, code, previous.version if previous else "",
                              previous_code, pause)
        self._active[target] = installed
        return installed

    def rollback(self, target: str) -> Installed:
        """Restore the original code of ``target``; returns what was removed."""
        installed = self._active.pop(target, None)
        if installed is None:
            raise SwapError(f"{target} has no active version to roll back")
        func, original = self._originals[target]
        with self.lock:
            func.__code__ = original
        return installed

    def active(self) -> dict[str, Installed]:
        return dict(self._active)

    def original_code(self, target: str) -> types.CodeType:
        self.function(target)
        return self._originals[target][1]

    def probe(self, target: str, handler: Handler) -> Probe:
        """A probe on the live function that cooperates with swaps (same lock)."""
        return Probe(self.function(target), handler, self.lock)

    def rollback_all(self) -> list[Installed]:
        return [self.rollback(target) for target in list(self._active)]
