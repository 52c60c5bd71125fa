"""An audit-hook tripwire for the shadow: evidence of what untrusted code tried.

This is a tripwire, not the boundary. The boundary is the jail around the whole
process (namespaces, a read-only file system, no capabilities, resource limits);
an audit hook lives in the same interpreter as the code it watches, and code
that can reach it can, in principle, fool it. What it adds is evidence and early
failure: once armed, a forbidden event raises :class:`ForbiddenOperation` inside
the call that caused it, and is recorded with the context it happened in
(``candidate``, ``original`` or ``harness`` for anything else, e.g. a finaliser
of an object the candidate returned), so the report can say *what* was tried.

:func:`classify` is the policy, a pure function of the event and its arguments.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# Events that untrusted code has no business raising at all.
FORBIDDEN_EVENTS: frozenset[str] = frozenset({
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
    "os.forkpty", "os.kill", "os.killpg", "signal.pthread_kill", "pty.spawn", "os.startfile",
    "sys.settrace", "sys.setprofile", "sys._getframe", "sys._current_frames",
    "sys._current_exceptions", "sys.addaudithook", "sys.set_asyncgen_hooks_firstiter",
    "sys.set_asyncgen_hooks_finalizer", "gc.get_objects", "gc.get_referrers",
    "gc.get_referents", "object.__getattr__", "object.__setattr__", "object.__delattr__",
    "builtins.input", "builtins.breakpoint", "code.__new__", "marshal.loads", "marshal.load",
    "marshal.dumps", "pickle.find_class", "os.putenv", "os.unsetenv", "os.chdir",
    "resource.setrlimit", "resource.prlimit", "mmap.__new__", "sqlite3.connect",
    "urllib.Request", "webbrowser.open", "os.chroot", "os.setns", "os.unshare",
    "cpython.PyInterpreterState_New", "_thread.start_new_thread",
})
FORBIDDEN_PREFIXES: tuple[str, ...] = ("ctypes.", "socket.", "ftplib.", "http.client.",
                                       "smtplib.", "imaplib.", "poplib.", "nntplib.",
                                       "telnetlib.", "winreg.", "msvcrt.", "_winapi.")
# Events whose path arguments change the file system: allowed inside the private tmp dir.
WRITE_EVENTS: frozenset[str] = frozenset({
    "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.chflags",
    "os.link", "os.symlink", "os.truncate", "os.utime", "os.setxattr", "os.removexattr",
    "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.copytree",
    "shutil.rmtree", "shutil.move", "shutil.chown", "shutil.make_archive",
    "shutil.unpack_archive", "tempfile.mkstemp", "tempfile.mkdtemp",
})
LIST_EVENTS: frozenset[str] = frozenset({"os.listdir", "os.scandir", "glob.glob", "glob.glob2"})
FORBIDDEN_MODULES: frozenset[str] = frozenset({
    "ctypes", "_ctypes", "subprocess", "_posixsubprocess", "socket", "_socket", "ssl", "_ssl",
    "multiprocessing", "_multiprocessing", "pty", "fcntl", "resource", "mmap", "gc",
    "threading", "_thread", "signal", "_signal", "asyncio", "selectors", "select", "pickle",
    "_pickle", "marshal", "shelve", "dbm", "sqlite3", "_sqlite3", "ftplib", "smtplib",
    "webbrowser", "importlib", "code", "codeop", "pdb", "bdb", "inspect", "sys",
    "os", "posix", "shutil", "tempfile", "builtins", "faulthandler", "tracemalloc",
})
# What the harness itself does while armed: unpickling fresh copies of recorded arguments.
HARNESS_ALLOWED: frozenset[str] = frozenset({"pickle.find_class"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_READABLE_DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")


class ForbiddenOperation(RuntimeError):
    """Raised inside untrusted code by the tripwire (a RuntimeError, so that audit hooks
    that untrusted code tries to add are refused)."""


@dataclass(frozen=True)
class Sighting:
    """One forbidden event: its name, a bounded rendering of its arguments, the context."""

    event: str
    detail: str
    context: str


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _real(path: Any) -> str | None:
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        return None
    return os.path.realpath(path)


def classify(event: str, args: tuple[Any, ...], *, tmpdir: str,
             read_roots: tuple[str, ...]) -> str | None:
    """Why ``event`` with ``args`` is forbidden for untrusted code, or None when it is fine."""
    if event in FORBIDDEN_EVENTS or event.startswith(FORBIDDEN_PREFIXES):
        return f"{event} is not allowed"
    if event == "open":
        return _classify_open(args, tmpdir, read_roots)
    if event in WRITE_EVENTS:
        paths = [arg for arg in args if isinstance(arg, (str, bytes, int)) and
                 not isinstance(arg, bool)]
        for path in paths[:2] if event in ("os.rename", "os.link", "os.symlink") else paths[:1]:
            real = _real(path)
            if real is None or not _under(real, (tmpdir,)):
                return f"{event} outside the private temporary directory ({path!r})"
        return None
    if event in LIST_EVENTS:
        real = _real(args[0] if args else ".")
        if real is None or not _under(real, (tmpdir, *read_roots)):
            return f"{event} of {args[0]!r} outside the code and the temporary directory"
        return None
    if event == "import":
        module = args[0] if args and isinstance(args[0], str) else ""
        if module.partition(".")[0] in FORBIDDEN_MODULES:
            return f"import of {module} is not allowed"
        return None
    if event in ("exec", "compile"):
        return _classify_code(event, args, read_roots)
    return None


def _classify_open(args: tuple[Any, ...], tmpdir: str, read_roots: tuple[str, ...]) -> str | None:
    path = args[0] if args else None
    mode = args[1] if len(args) > 1 and isinstance(args[1], str) else "r"
    flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
    writing = any(ch in mode for ch in "wax+") or bool(flags & _WRITE_FLAGS)
    real = _real(path)
    if real is None:
        return f"open of file descriptor {path!r} for writing" if writing else None
    if writing:
        return None if _under(real, (tmpdir,)) else \
            f"open of {path!r} for writing outside the private temporary directory"
    if _under(real, (tmpdir, *read_roots)) or real in _READABLE_DEVICES:
        return None
    return f"open of {path!r} outside the code and the temporary directory"


def _classify_code(event: str, args: tuple[Any, ...], read_roots: tuple[str, ...]) -> str | None:
    # Importing an allowed module compiles and executes its file; anything else that
    # compiles or executes code at run time is what the static gate forbids.
    if event == "exec":
        code = args[0] if args else None
        filename = code.co_filename if isinstance(code, types.CodeType) else None
    else:
        filename = args[1] if len(args) > 1 else None
    real = _real(filename)
    if real is not None and os.path.isabs(str(filename)) and _under(real, read_roots):
        return None
    return f"{event} of code from {filename!r} at run time"


class Tripwire:
    """The installed audit hook and its state; the harness holds the only reference.

    The hook is a closure over a plain dict and list, with every name it needs bound
    when it is made, so rebinding a module or class attribute does not switch it off.
    """

    def __init__(self, tmpdir: str, read_roots: tuple[str, ...], limit: int = 20) -> None:
        self._state: dict[str, Any] = {
            "armed": False, "context": "harness", "dropped": 0,
            "tmpdir": os.path.realpath(tmpdir), "read_roots": (),
        }
        self.read_roots = read_roots
        self.sightings: list[Sighting] = []
        self._hook = _make_hook(self._state, self.sightings, limit)

    @property
    def read_roots(self) -> tuple[str, ...]:
        return tuple(self._state["read_roots"])

    @read_roots.setter
    def read_roots(self, roots: tuple[str, ...]) -> None:
        self._state["read_roots"] = tuple(os.path.realpath(root) for root in roots if root)

    @property
    def armed(self) -> bool:
        return bool(self._state["armed"])

    @property
    def current(self) -> str:
        return str(self._state["context"])

    def install(self) -> None:
        sys.addaudithook(self._hook)

    def arm(self) -> None:
        """From now on, forbidden events raise; the candidate is about to exist."""
        self._state["armed"] = True

    @contextmanager
    def context(self, name: str) -> Iterator[None]:
        """Attribute events raised inside the block to ``name``."""
        previous, self._state["context"] = self._state["context"], name
        try:
            yield
        finally:
            self._state["context"] = previous

    @contextmanager
    def disarmed(self) -> Iterator[None]:
        """For the harness's own audited steps (installing the candidate's code object)."""
        previous, self._state["armed"] = self._state["armed"], False
        try:
            yield
        finally:
            self._state["armed"] = previous


def _make_hook(state: dict[str, Any], sightings: list[Sighting], limit: int
               ) -> Callable[[str, tuple[Any, ...]], None]:
    _classify, _sighting, _forbidden = classify, Sighting, ForbiddenOperation
    _len, _append, _allowed = len, list.append, HARNESS_ALLOWED
    busy = [False]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not state["armed"] or busy[0] or (state["context"] == "harness" and event in _allowed):
            return
        busy[0] = True
        try:
            reason = _classify(event, args, tmpdir=state["tmpdir"], read_roots=state["read_roots"])
        finally:
            busy[0] = False
        if reason is None:
            return
        if _len(sightings) < limit:
            _append(sightings, _sighting(event, reason[:300], state["context"]))
        else:
            state["dropped"] += 1
        raise _forbidden(f"forbidden in the shadow: {reason}")

    return hook
