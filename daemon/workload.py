"""The hosted workload: the user's own ``MOD:CALLABLE`` (the bundled demo is one such app).

The contract an app follows (the README's "Hosting your own app" says the same):

- ``workload.app`` names a callable; ``workload.options`` (a mapping in
  ``selfmod.yaml``) is passed to it as keyword arguments.
- If it takes one positional argument it is given a :class:`threading.Event`
  that is set on shutdown, and it should return soon after; otherwise it runs
  until the process exits (the thread is a daemon thread, so it never holds
  the process up). ``selfmod run`` checks that the callable accepts this call
  before the daemon starts (:func:`check_app_call`).
- The app is supervised: when its thread ends, by returning or raising,
  :class:`AppHost` hands an :class:`~daemon.events.AppExited` (the exception's
  type, message and the app's frame it came from) to the daemon, which logs,
  counts and reports it.
- If the callable has a ``stats()`` method (or attribute) returning a mapping,
  the daemon polls it for the counters it exports: ``items``, ``throughput``
  (items per second), ``errors``, ``batches``, ``oracle_checks``,
  ``oracle_mismatches`` and ``last_mismatch`` (``{"function", "detail"}``);
  every key is optional. Apps without it export no workload metrics.

The daemon never imports an app's package by name: the bundled demo is found
through ``config/selfmod.yaml`` like any user's app.
"""

from __future__ import annotations

import importlib
import inspect
import os
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from daemon.errors import StartupError
from daemon.events import AppExited
from envelope.threads import StoppableThread


@dataclass(frozen=True)
class WorkloadStats:
    items: int
    throughput: float  # items per second over the workload's window
    errors: int = 0
    oracle_checks: int = 0
    oracle_mismatches: int = 0
    batches: int = 0  # units of work attempted; errors counts those that raised
    last_mismatch: tuple[str, str] | None = None  # (function, detail) of the latest

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> WorkloadStats:
        """Read an app's ``stats()`` mapping; unknown keys are ignored, missing ones are 0."""
        last = data.get("last_mismatch")
        mismatch = None
        if isinstance(last, Mapping):
            mismatch = (str(last.get("function", "")), str(last.get("detail", "")))
        return cls(items=int(data.get("items", 0)), throughput=float(data.get("throughput", 0.0)),
                   errors=int(data.get("errors", 0)),
                   oracle_checks=int(data.get("oracle_checks", 0)),
                   oracle_mismatches=int(data.get("oracle_mismatches", 0)),
                   batches=int(data.get("batches", 0)), last_mismatch=mismatch)


class Workload(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float) -> bool: ...

    def stats(self) -> WorkloadStats | None: ...


def load_app(spec: str) -> Callable[..., Any]:
    """The callable named by ``MODULE:CALLABLE``; a :class:`StartupError` says what is wrong."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise StartupError(f"--app {spec!r}: expected MODULE:CALLABLE, e.g. shop.app:main")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise StartupError(f"--app {spec!r}: cannot import {module_name!r}: "
                           f"{type(exc).__name__}: {exc}") from exc
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise StartupError(f"--app {spec!r}: {module_name} has no attribute {attr!r}")
    if not callable(target):
        raise StartupError(f"--app {spec!r}: {attr} is not callable")
    return target  # type: ignore[no-any-return]


def app_call(app: Callable[..., Any], options: Mapping[str, Any],
             stop: threading.Event) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments the daemon calls ``app`` with: the stop event if it takes one
    required positional argument, and the options as keywords."""
    try:
        params = inspect.signature(app).parameters.values()
    except (TypeError, ValueError):
        return (), dict(options)
    required = [p for p in params if p.default is p.empty and
                p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return ((stop,) if len(required) == 1 else ()), dict(options)


def check_app_call(spec: str, app: Callable[..., Any], options: Mapping[str, Any]) -> None:
    """Refuse (a :class:`StartupError`) an app whose signature cannot take the daemon's call."""
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):
        return  # no signature to read (some builtins): the first call will tell
    args, kwargs = app_call(app, options, threading.Event())
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        name = getattr(app, "__name__", "main")
        given = ", ".join((["the shutdown event"] if args else [])
                          + [f"{key}=... (workload.options)" for key in sorted(kwargs)])
        raise StartupError(
            f"--app {spec!r}: {name}{signature} cannot be called as the daemon calls it "
            f"({given or 'no arguments'}): {exc}; define it as 'def {name}(stop)', where stop "
            f"is a threading.Event set at shutdown, or 'def {name}()', with a keyword "
            "parameter for each of workload.options") from None


def _where(exc: BaseException, app: Callable[..., Any]) -> str:
    """``file:line in function`` of the app's own frame that ``exc`` came from.

    The innermost frame outside selfmod; when there is none (the call itself
    failed), the app's definition.
    """
    ours = Path(__file__).resolve().parents[1]
    own = {str(ours / package) for package in ("daemon", "envelope", "invariants", "snapshots")}
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if not any(frame.filename.startswith(root + os.sep) for root in own)]
    if frames:
        frame = frames[-1]
        return f"{_shown(frame.filename)}:{frame.lineno} in {frame.name}"
    try:
        file = inspect.getsourcefile(app) or "?"
        line = inspect.getsourcelines(app)[1]
    except (OSError, TypeError):
        return getattr(app, "__qualname__", repr(app))
    return f"{_shown(file)}:{line} in {getattr(app, '__qualname__', '?')}"


def _shown(path: str) -> str:
    """``path`` relative to the working directory when it lies under it."""
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else path
    except (OSError, ValueError):
        return path


class AppHost:
    """An app's ``MOD:CALLABLE`` run in a thread, with its options and its counters.

    ``on_exit`` is called from the app's thread when the app returns or raises.
    """

    def __init__(self, spec: str, options: Mapping[str, Any] | None = None, *,
                 on_exit: Callable[[AppExited], None] | None = None) -> None:
        self.name = spec
        self._callable = load_app(spec)
        self._options = dict(options or {})
        self._stats: Callable[[], Any] | None = None
        stats = getattr(self._callable, "stats", None)
        if callable(stats):
            self._stats = stats
        self._stop = threading.Event()
        self._on_exit = on_exit
        self.exited: AppExited | None = None
        self._thread = threading.Thread(target=self._run, name="selfmod-app", daemon=True)

    def _run(self) -> None:
        args, kwargs = app_call(self._callable, self._options, self._stop)
        try:
            self._callable(*args, **kwargs)
        except SystemExit as exc:
            self.exited = self._returned() if exc.code in (None, 0) else self._failed(exc)
        except BaseException as exc:  # the app's failure is reported, not re-raised here
            self.exited = self._failed(exc)
        else:
            self.exited = self._returned()
        if self._on_exit is not None:
            self._on_exit(self.exited)

    def _returned(self) -> AppExited:
        # after stop() returning is what the app was asked to do; before, it ends the workload
        return AppExited(self.name, "stopped" if self._stop.is_set() else "returned")

    def _failed(self, exc: BaseException) -> AppExited:
        shown = traceback.format_exception(exc, limit=-20)
        return AppExited(self.name, "failed", error_type=type(exc).__name__, error=str(exc),
                         where=_where(exc, self._callable), traceback="".join(shown))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stats(self) -> WorkloadStats | None:
        """The app's counters, or None when it exports none (or they cannot be read)."""
        if self._stats is None:
            return None
        try:
            data = self._stats()
        except Exception:  # an app's broken counter must not break the daemon's gauges
            return None
        if not isinstance(data, Mapping):
            return None
        try:
            return WorkloadStats.from_mapping(data)
        except (TypeError, ValueError):
            return None


class MismatchWatcher(StoppableThread):
    """Turns a rise in the app's ``oracle_mismatches`` into events, as it happens.

    Polled in its own thread because the main loop is busy for a whole cycle,
    and a mismatch during a canary window is exactly what an operator must see.
    """

    def __init__(self, workload: Workload, publish: Callable[[int, str, str], None], *,
                 interval: float = 0.5,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        super().__init__(name="selfmod-workload-watch", interval=interval, on_error=on_error)
        self._workload = workload
        self._publish = publish
        self._seen = 0

    def step(self) -> None:
        stats = self._workload.stats()
        if stats is None or stats.oracle_mismatches <= self._seen:
            return
        new, self._seen = stats.oracle_mismatches - self._seen, stats.oracle_mismatches
        function, detail = stats.last_mismatch or ("", "results differ")
        self._publish(new, function or "unknown", detail)
