"""Helpers for tests that drive the real daemon: the process, its CLI, its state, systemd's socket.

Nothing here stands in for our own code: the daemon is ``python -m daemon.cli
run`` in a subprocess, the state it restores is written with the same ledger
the daemon uses, and the notify socket is a real Unix datagram socket bound the
way systemd binds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

SELFMOD = [sys.executable, "-m", "daemon.cli"]


DEMO_APP = "demo.workload:main"
DEMO_SCOPE = "demo.logstats:*"


def with_demo(args: list[str]) -> list[str]:
    """``args`` hosting the bundled demo (and its target module) unless they name an app."""
    if "--app" in args:
        return args
    extra = ["--app", DEMO_APP]
    if "--scope" not in args and "--config" not in args:
        extra += ["--scope", DEMO_SCOPE]
    return [*args, *extra]


def quick_config(directory: Path, *, candidates: int | None = 1) -> Path:
    """A ``selfmod.yaml`` (in ``directory``) for tests whose point is not the ranking nor the
    choice among candidates: the profiler samples four times as often and ranks after 20
    in-scope samples, so a scope that is cold (the demo after its swaps) is ranked in
    seconds, not a minute; and only the first ``candidates`` of a request are judged (the
    rules propose their composition first). Everything else is the embedded default."""
    path = directory / "selfmod-quick.yaml"
    cycle = "{min_samples: 20" + (f", max_candidates: {candidates}}}" if candidates else "}")
    path.write_text(f"version: 1\nprofiler: {{hz: 200}}\ncycle: {cycle}\n")
    return path


class LiveDaemon:
    """A ``selfmod run`` subprocess whose JSON log lines are collected as they arrive."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        environ = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        args = with_demo(args)
        self.proc = subprocess.Popen([*SELFMOD, "run", *args], cwd=cwd, env=environ,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.raw.append(line)
            with contextlib.suppress(json.JSONDecodeError):
                self.lines.append(json.loads(line))

    def tail(self, lines: int = 40) -> str:
        return "".join(self.raw[-lines:])

    def events(self, name: str, since: int = 0) -> list[dict[str, Any]]:
        """Log events called ``name``, from log line ``since`` on."""
        return [line for line in list(self.lines)[since:] if line.get("event") == name]

    def wait_for(self, name: str, timeout: float,
                 where: Callable[[dict[str, Any]], bool] = lambda _: True,
                 since: int = 0) -> dict[str, Any]:
        """The first log event ``name`` after line ``since`` for which ``where`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events(name, since) if where(e)]
            if found:
                return found[0]
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the reader drain what the process wrote last
                found = [e for e in self.events(name, since) if where(e)]
                if found:
                    return found[0]
                break
            time.sleep(0.1)
        raise AssertionError(f"no {name!r} event after line {since}; every event:\n"
                             f"{self.timeline()}\nlast lines:\n{self.tail(15)}")

    def timeline(self, limit: int = 200) -> str:
        """One short line per log event (time, event, target, outcome or reason): what the
        daemon did all along, where the tail shows only its last moments."""
        rows = []
        for line in list(self.lines)[-limit:]:
            fields = [str(line.get("timestamp", ""))[11:23], str(line.get("event", ""))]
            fields += [str(line[key])[:80] for key in ("target", "outcome", "reason", "stage",
                                                        "origin", "share", "seconds")
                       if line.get(key) not in (None, "")]
            rows.append(" ".join(fields))
        return "\n".join(rows)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then wait for the exit code (killing what is left after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.finish(timeout)

    def finish(self, timeout: float) -> int:
        """Wait for the process to exit; kill it (and any child left) if it does not."""
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        """Kill the daemon and every process it started, if any is still running."""
        if self.proc.poll() is None:
            try:
                children = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                children = []
            self.proc.kill()
            self.proc.wait()
            for child in children:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            psutil.wait_procs(children, timeout=5)
        self._reader.join(5)


def cli(*args: str, cwd: Path, ok: bool = True) -> Any:
    """Run ``selfmod ARGS --json``; the parsed answer (an error answer when ``ok`` is False)."""
    out = subprocess.run(SELFMOD + list(args) + ["--json"], cwd=cwd, capture_output=True,
                         text=True, timeout=60)
    assert (out.returncode == 0) == ok, out.stdout + out.stderr
    return json.loads(out.stdout)


def seed_version(state_dir: Path, target: str, note: str, *, awaiting_approval: bool = False,
                 sleep_seconds: float = 0.0) -> str:
    """Store a version of ``target`` (its original plus a comment) and return its id.

    The version is active, as if accepted in an earlier run, or, with
    ``awaiting_approval``, proposed and waiting for ``selfmod approve``. With
    ``sleep_seconds`` each call first sleeps that long: right, and slower.
    """
    from daemon.ledger import Ledger
    from daemon.swap import SwapManager
    from daemon.synthesis.base import Candidate
    from invariants.targets import sha256_text
    from snapshots import Snapshots

    original = SwapManager().original_source(target)
    base = sha256_text(original)
    source = original.rstrip("\n") + f"\n    # {note}\n"
    if sleep_seconds:
        import ast

        tree = ast.parse(source)
        body = tree.body[0].body  # type: ignore[attr-defined]
        body[:0] = ast.parse(f"__import__('time').sleep({sleep_seconds!r})").body
        source = ast.unparse(tree) + "\n"
    evidence = {"speedup": 1.2, "ci_low": 1.1, "ci_high": 1.3, "calls": 5}
    with Snapshots(state_dir) as snapshots:
        ledger = Ledger.writer(snapshots)
        ledger.remember_base(target, base, original)
        version = ledger.propose(Candidate(target, source, "rules:seeded", base), base)
        if awaiting_approval:
            ledger.await_approval(version, evidence)
        else:
            ledger.activate(target, version, evidence)
    return version


class NotifyListener:
    """A bound ``NOTIFY_SOCKET`` that collects every datagram in a background thread."""

    def __init__(self) -> None:
        # sun_path holds 108 bytes, so not under pytest's long tmp_path
        self._dir = tempfile.TemporaryDirectory(prefix="sdn")
        self.path = str(Path(self._dir.name) / "notify")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.settimeout(0.1)
        self.messages: list[str] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                self.messages.append(self._sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def wait_for(self, predicate: Callable[[str], bool], timeout: float, *,
                 after: int = 0) -> int:
        """Index of the first message from index ``after`` on that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, message in enumerate(list(self.messages)[after:], start=after):
                if predicate(message):
                    return index
            time.sleep(0.05)
        raise AssertionError(f"no matching notification; received: {self.messages}")

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._sock.close()
        self._dir.cleanup()


def fields(message: str) -> dict[str, str]:
    """``KEY=VALUE`` lines of one notification, as a dict."""
    return dict(line.split("=", 1) for line in message.splitlines())
