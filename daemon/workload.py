"""The hosted workload: the bundled demo, or the user's own ``MOD:CALLABLE``.

A user's callable runs in a daemon-owned thread. If it accepts one argument it
is given a :class:`threading.Event` that is set on shutdown, and it should return
soon after; otherwise it runs until the process exits (the thread is a daemon
thread, so it never holds the process up).
"""

from __future__ import annotations

import importlib
import inspect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from daemon.errors import ConfigError


@dataclass(frozen=True)
class WorkloadStats:
    items: int
    throughput: float  # items per second over the workload's window
    errors: int = 0
    oracle_checks: int = 0
    oracle_mismatches: int = 0
    batches: int = 0  # units of work attempted; errors counts those that raised


class Workload(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float) -> bool: ...

    def stats(self) -> WorkloadStats | None: ...


class DemoHost:
    """The bundled access-log analytics service, with its live oracle."""

    name = "demo"

    def __init__(self, *, seed: int, threads: int, oracle_every: int,
                 on_mismatch: Callable[[str, str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        from daemon.demo.workload import DemoWorkload

        self._demo = DemoWorkload(seed=seed, workers=threads, oracle_every=oracle_every,
                                  clock=clock, on_mismatch=on_mismatch)

    def start(self) -> None:
        self._demo.start()

    def stop(self) -> None:
        self._demo.stop()

    def join(self, timeout: float) -> bool:
        return self._demo.join(timeout)

    def stats(self) -> WorkloadStats:
        s = self._demo.snapshot()
        return WorkloadStats(s.items, s.throughput, s.errors, s.oracle_checks, s.mismatches,
                             s.batches)


class AppHost:
    """A user's ``MOD:CALLABLE`` run in a thread."""

    def __init__(self, spec: str) -> None:
        module_name, sep, attr = spec.partition(":")
        if not sep or not module_name or not attr:
            raise ConfigError(f"--app {spec!r}: expected MODULE:CALLABLE, e.g. shop.app:main")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise ConfigError(f"--app {spec!r}: cannot import {module_name!r}: {exc}") from exc
        target: Any = module
        for part in attr.split("."):
            target = getattr(target, part, None)
            if target is None:
                raise ConfigError(f"--app {spec!r}: {module_name} has no attribute {attr!r}")
        if not callable(target):
            raise ConfigError(f"--app {spec!r}: {attr} is not callable")
        self.name = spec
        self._callable: Callable[..., Any] = target
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="selfmod-app", daemon=True)

    def _wants_stop_event(self) -> bool:
        try:
            params = inspect.signature(self._callable).parameters.values()
        except (TypeError, ValueError):
            return False
        required = [p for p in params if p.default is p.empty and
                    p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        return len(required) == 1

    def _run(self) -> None:
        try:
            if self._wants_stop_event():
                self._callable(self._stop)
            else:
                self._callable()
        except BaseException as exc:  # the app's failure is reported, not re-raised here
            self.error = exc

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stats(self) -> WorkloadStats | None:
        return None
