"""Hot reload of the envelope policy: watch the file, validate, swap atomically or keep the last.

The watcher observes the policy file's *directory*, because editors and
configuration tools replace a file by writing a temporary one and renaming it
over the original, which a watch on the file itself would lose. Any event that
touches the file (created, modified, attributes changed, moved to or from,
deleted) starts a short debounce; when the file has been quiet that long it is
loaded once. ``reload()`` does the same at once and is what the daemon calls on
SIGHUP.

A valid policy whose bytes differ from the one in force replaces it and is
passed to ``on_loaded``, provided its ``version`` is higher: a lower version (an
old policy put back, by mistake or by someone replaying it) or new content under
the same version is refused like any bad policy, unless the daemon was started
with ``allow_downgrade`` (``selfmod run --allow-policy-downgrade``, audited).
Anything else (a syntax error, a wrong type, an unknown key, an empty or
half-written file, deletion, a symlink, a world-writable file) goes to
``on_error`` and the last good policy stays ``current``. Policies are frozen,
so handing the new object over is the whole swap: a cycle that already
holds the old one finishes with it. Nothing raises out of the watching threads.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from envelope.errors import PolicyError
from envelope.policy import Policy, load_policy
from envelope.threads import StoppableThread

# Opening and closing without writing are what our own reads produce; reacting to
# them would reload forever.
_RELEVANT_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed", "attrib"})

_log = logging.getLogger(__name__)
T = TypeVar("T")


class PolicyWatcher:
    """Keeps ``current`` equal to the last valid content of the policy file at ``path``."""

    def __init__(self, path: Path, on_loaded: Callable[[Policy], None],
                 on_error: Callable[[PolicyError], None], debounce: float = 0.2, *,
                 current: Policy | None = None, allow_downgrade: bool = False) -> None:
        self.path = Path(os.path.abspath(path))
        self.allow_downgrade = allow_downgrade
        self.debounce = debounce
        self._on_loaded = on_loaded
        self._on_error = on_error
        self._current = current
        self._lock = threading.Lock()  # one load at a time: SIGHUP and file events may race
        self._observer: BaseObserver | None = None
        self.attempts = 0  # loads finished, whatever their outcome: for metrics and tests
        self._debouncer: _Debouncer | None = None

    @property
    def current(self) -> Policy | None:
        """The policy in force: the last one that loaded, or None if none has yet."""
        return self._current

    def start(self) -> None:
        """Start watching, then load the file (reported only if it differs from ``current``).

        Raises PolicyError when the directory cannot be watched (it does not exist).
        """
        if self._observer is not None:
            return
        debouncer = _Debouncer(self.debounce, self.reload)
        observer = Observer()
        observer.name = "selfmod-policy-observer"
        try:
            observer.schedule(_Handler(self.path, debouncer.poke), str(self.path.parent),
                              recursive=False)
            observer.start()  # the inotify watch is added here, so this is where it fails
        except OSError as exc:
            observer.stop()
            if observer.is_alive():
                observer.join()
            raise PolicyError.single(str(self.path), f"cannot watch {self.path.parent}: "
                                     f"{exc.strerror or exc}", "create the directory") from exc
        debouncer.start()
        self._debouncer, self._observer = debouncer, observer
        # Loaded once the watch is in place, so that no change can fall in between.
        self.reload()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching and join the threads; ``current`` keeps its value."""
        observer, debouncer = self._observer, self._debouncer
        self._observer = self._debouncer = None
        if observer is not None:
            observer.stop()
            observer.join(timeout)
        if debouncer is not None:
            debouncer.stop_and_join(timeout)

    def reload(self) -> None:
        """Load the file now; the result goes to ``on_loaded`` or ``on_error``. Never raises."""
        with self._lock:
            try:
                self._load()
            finally:
                self.attempts += 1

    def _load(self) -> None:
        try:
            policy = load_policy(self.path)
        except PolicyError as exc:
            self._call(self._on_error, exc)
            return
        except Exception as exc:  # a bug in loading must not end the watcher
            _log.exception("loading the policy failed unexpectedly")
            self._call(self._on_error, PolicyError.single(
                str(self.path), f"could not be loaded ({type(exc).__name__}: {exc})"))
            return
        if self._current is not None and self._current.sha256 == policy.sha256:
            return
        if self._current is not None and not self.allow_downgrade:
            refused = version_refusal(self._current, policy)
            if refused is not None:
                self._call(self._on_error, refused)
                return
        self._current = policy
        self._call(self._on_loaded, policy)

    @staticmethod
    def _call(callback: Callable[[T], None], arg: T) -> None:
        try:
            callback(arg)
        except Exception:
            _log.exception("a policy watcher callback failed")


def version_refusal(current: Policy, new: Policy) -> PolicyError | None:
    """Why ``new`` may not replace ``current``: its version does not move forward."""
    if new.version > current.version:
        return None
    if new.version < current.version:
        problem = (f"version {new.version} is lower than version {current.version} in force: "
                   "a policy only moves forward (is an old policy being put back?)")
    else:
        problem = f"the content changed but the version is still {current.version}"
    return PolicyError.single(
        new.source, problem, f"set `version: {current.version + 1}` or higher; to go back "
        "on purpose, restart with --allow-policy-downgrade", location="version")


class _Handler(FileSystemEventHandler):
    """Passes on events that touch one file of the watched directory."""

    def __init__(self, path: Path, poke: Callable[[], None]) -> None:
        self._path = os.path.normpath(str(path))
        self._poke = poke

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in _RELEVANT_EVENTS or event.is_directory:
            return
        paths = [event.src_path, getattr(event, "dest_path", "")]
        if any(p and os.path.normpath(os.fsdecode(p)) == self._path for p in paths):
            self._poke()


class _Debouncer(StoppableThread):
    """Runs ``action`` once the pokes have stopped for ``delay`` seconds."""

    def __init__(self, delay: float, action: Callable[[], None]) -> None:
        super().__init__("selfmod-policy-reload", interval=0.0,
                         on_error=lambda exc: _log.error("policy reload failed: %s", exc))
        self._delay = delay
        self._action = action
        self._wake = threading.Condition()
        self._due: float | None = None

    def poke(self) -> None:
        with self._wake:
            self._due = time.monotonic() + self._delay
            self._wake.notify()

    def stop(self) -> None:
        super().stop()
        with self._wake:
            self._wake.notify()

    def step(self) -> None:
        with self._wake:
            while not self.stopped.is_set():
                if self._due is None:
                    self._wake.wait()
                    continue
                remaining = self._due - time.monotonic()
                if remaining <= 0:
                    self._due = None
                    break
                self._wake.wait(remaining)
            else:
                return
        self._action()
