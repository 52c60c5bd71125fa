"""Hot-swap: install a version's code into the live function object, and take it out again.

The swap is one attribute assignment (``func.__code__ = code``) under a lock,
which is atomic with respect to other Python threads: a call that starts after
it runs the new code, a call already running finishes on the code object its
frame holds. Every reference to the function sees the change, because the
function object itself is never replaced.

Versions of one target stack up: a version built on the one in force replaces
it, and each :class:`Installed` keeps the code it replaced. A rollback takes the
top version out and puts back exactly the code that was live before it (the
previous version, or the original once the stack is empty), by the same single
assignment.
"""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass

from daemon.errors import SwapError
from daemon.probe import Handler, Probe
from invariants.targets import Target, compile_function, original_source, resolve
from snapshots.versions import short_id


@dataclass(frozen=True)
class Installed:
    """A version in force on a live function."""

    target: str
    version: str
    code: types.CodeType
    previous_version: str  # the version it replaced; "" for the original code
    previous_code: types.CodeType  # what a rollback puts back
    pause_seconds: float


class SwapManager:
    """Owns every code replacement the daemon makes in the live process."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self.lock = threading.Lock()  # shared with probes: one writer of __code__ at a time
        self._originals: dict[str, tuple[types.FunctionType, types.CodeType]] = {}
        self._sources: dict[str, str] = {}
        self._stacks: dict[str, list[Installed]] = {}  # per target, oldest first
        self._rollout_locks: dict[str, threading.Lock] = {}

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
            func, code = self._originals[target]
            self._sources[target] = original_source(code, func.__globals__)
        return self._sources[target]

    def compile(self, target: str, source: str, version: str) -> types.CodeType:
        """Compile a validated version for ``target`` (raises SwapError when it cannot fit)."""
        func = self.function(target)
        short = short_id(version)
        try:
            return compile_function(source, func, filename=f"<selfmod {target} {short}>")
        except (SyntaxError, ValueError) as exc:
            raise SwapError(f"{target}: version {short} does not compile: {exc}") from exc
        except Exception as exc:
            raise SwapError(f"{target}: version {short} cannot be installed: {exc}") from exc

    def install(self, target: str, version: str, code: types.CodeType) -> Installed:
        """Put ``version`` in force on ``target``, over whatever version is in force now."""
        func = self.function(target)
        with self.lock:
            stack = self._stacks.setdefault(target, [])
            previous = stack[-1] if stack else None
            # What the version replaces is the stack's top, not whatever __code__ holds:
            # a probe's trampoline may be in place, and it must never become a rollback target.
            previous_code = previous.code if previous else self._originals[target][1]
            before = self._clock()
            func.__code__ = code
            pause = self._clock() - before
            installed = Installed(target, version, code, previous.version if previous else "",
                                  previous_code, pause)
            stack.append(installed)
        return installed

    def rollback(self, target: str, version: str | None = None) -> Installed:
        """Take the version in force on ``target`` out and put back the code it replaced.

        With ``version``, only that version is taken out: if another one is in force
        (a concurrent rollback got there first), SwapError, and nothing changes.
        Returns the Installed that was removed; its ``previous_version`` is now live.
        """
        with self.lock:
            stack = self._stacks.get(target)
            if not stack:
                raise SwapError(f"{target} has no active version to roll back")
            installed = stack[-1]
            if version is not None and installed.version != version:
                raise SwapError(f"{target}: version {short_id(version)} is not the one in force "
                                f"({short_id(installed.version)} is)")
            func = self._originals[target][0]
            func.__code__ = installed.previous_code
            stack.pop()
            if not stack:
                del self._stacks[target]
        return installed

    def rollout_lock(self, target: str) -> threading.Lock:
        """Held while a version of ``target`` is put live and watched, so rollouts never overlap.

        A cycle's rollout and an operator's approval on the same target would
        otherwise interleave baseline, install and canary, each judging the
        other's version against the wrong baseline.
        """
        with self.lock:
            return self._rollout_locks.setdefault(target, threading.Lock())

    def active(self) -> dict[str, Installed]:
        """The version in force on each target that has one."""
        with self.lock:
            return {target: stack[-1] for target, stack in self._stacks.items()}

    def stack(self, target: str) -> list[Installed]:
        """The versions installed on ``target``, oldest first; the last is in force."""
        with self.lock:
            return list(self._stacks.get(target, ()))

    def original_code(self, target: str) -> types.CodeType:
        self.function(target)
        return self._originals[target][1]

    def probe(self, target: str, handler: Handler) -> Probe:
        """A probe on the live function that cooperates with swaps (same lock)."""
        return Probe(self.function(target), handler, self.lock)

    def rollback_all(self) -> list[Installed]:
        """Put the original code back on every target; returns what was removed, newest first."""
        removed = []
        for target in list(self.active()):
            while target in self.active():
                removed.append(self.rollback(target))
        return removed
