"""The parent's side of one shadow run: feed the job, drain the pipes, reap the group.

Three pipes are read at once (stdout and stderr, of which only a tail of
``output_bytes`` is kept, and the result pipe, capped at ``result_bytes``; past a
cap the rest is drained and dropped, so a flood neither blocks nor fills the
daemon). At the wall-clock deadline, or when ``cancel`` is set, the whole
process group is killed with SIGKILL. The group leader is reaped only after the
group is seen empty, so its id cannot be reused while we still signal it.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

REAP_SECONDS = 2.0  # how long to wait for a killed process group to disappear
EXIT_GRACE = 1.0  # after the child exits, how long its pipes may stay open


@dataclass
class Captured:
    """What the parent collected from one child."""

    result: bytearray = field(default_factory=bytearray)
    result_overflow: bool = False
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    timed_out: bool = False
    cancelled: bool = False
    returncode: int = 0
    leftovers: list[int] = field(default_factory=list)



class Collector:
    """Feeds the job to one child and drains its pipes until it is gone or the deadline."""

    def __init__(self, process: subprocess.Popen[bytes], result_fd: int, payload: bytes, *,
                 wall_seconds: float, output_bytes: int, result_bytes: int,
                 cancel: threading.Event | None = None) -> None:
        self.process = process
        self.wall_seconds = wall_seconds
        self.output_bytes = output_bytes
        self.result_bytes = result_bytes
        self.cancel = cancel
        self.captured = Captured()
        self.payload = memoryview(payload)
        self.selector = selectors.DefaultSelector()
        assert process.stdin and process.stdout and process.stderr
        self.sinks = {process.stdout.fileno(): self.captured.stdout,
                      process.stderr.fileno(): self.captured.stderr,
                      result_fd: self.captured.result}
        self.result_fd = result_fd
        for fd in self.sinks:
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ)
        self.stdin_fd = process.stdin.fileno()
        os.set_blocking(self.stdin_fd, False)
        self.selector.register(self.stdin_fd, selectors.EVENT_WRITE)

    def collect(self) -> Captured:
        try:
            self._pump(time.monotonic() + self.wall_seconds)
        finally:
            self._finish()
        return self.captured

    def _pump(self, deadline: float) -> None:
        exited_at: float | None = None
        while True:
            now = time.monotonic()
            if now >= deadline:
                self.captured.timed_out = exited_at is None
                return
            if self.cancel is not None and self.cancel.is_set() and exited_at is None:
                self.captured.cancelled = True
                return
            if exited_at is None and _has_exited(self.process.pid):
                exited_at = now
            if exited_at is not None and (not self.selector.get_map()
                                          or now - exited_at > EXIT_GRACE):
                return
            timeout = min(deadline - now, 0.05 if exited_at is not None else 0.2)
            for key, _ in self.selector.select(timeout):
                fd = int(key.fd)
                if fd == self.stdin_fd:
                    self._feed()
                else:
                    self._drain(fd)

    def _feed(self) -> None:
        try:
            written = os.write(self.stdin_fd, self.payload[:65536])
        except BlockingIOError:
            return
        except OSError:  # the child closed its stdin: it will not read the job
            written = len(self.payload)
        self.payload = self.payload[written:]
        if not self.payload:
            self._close(self.stdin_fd)

    def _drain(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close(fd)
            return
        sink = self.sinks[fd]
        if fd == self.result_fd:
            room = self.result_bytes - len(sink)
            if len(chunk) > room:
                self.captured.result_overflow = True
            sink += chunk[:max(room, 0)]
            return
        sink += chunk
        cap = self.output_bytes
        if len(sink) > 2 * cap:
            del sink[:-cap]

    def _close(self, fd: int) -> None:
        self.selector.unregister(fd)
        if fd == self.result_fd:
            os.close(fd)
        elif fd == self.stdin_fd and self.process.stdin is not None:
            self.process.stdin.close()
        # stdout and stderr are closed by Popen's own file objects in _finish

    def _finish(self) -> None:
        """Kill what is left, wait until the group is empty, reap the leader, close pipes.

        Members other than the leader go first, so that a jail's ``unshare`` reaps
        the namespace's init itself (an orphaned init would linger as a zombie until
        the machine's PID 1 got round to it). The leader is reaped last: while it is
        unreaped its id, which is also the group's, cannot be reused.
        """
        pgid = self.process.pid
        gone_by = time.monotonic() + REAP_SECONDS
        _kill_members(pgid)
        while not _has_exited(pgid) and time.monotonic() < gone_by:
            time.sleep(0.005)
        _kill_group(pgid)
        members = _group_members(pgid, exclude=pgid)
        while members and time.monotonic() < gone_by:
            time.sleep(0.01)
            _kill_members(pgid)
            members = _group_members(pgid, exclude=pgid)
        self.captured.leftovers = members
        self.captured.returncode = self.process.wait()
        for key in list(self.selector.get_map().values()):
            self._close(int(key.fd))
        self.selector.close()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        for sink in (self.captured.stdout, self.captured.stderr):
            del sink[:-self.output_bytes]


def _has_exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it (its pid must stay reserved)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _kill_members(pgid: int) -> None:
    """SIGKILL every member of the group but its leader, through pidfds (no pid-reuse race)."""
    for pid in _group_members(pgid, exclude=pgid):
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            if _pgid_of(pid) == pgid:  # still ours, now that the pidfd pins the process
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(pidfd)


def _pgid_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    return int(fields[2]) if len(fields) > 2 else None


def _group_members(pgid: int, exclude: int) -> list[int]:
    """Processes (zombies included) whose process group is ``pgid``, read from /proc."""
    return [int(entry.name) for entry in os.scandir("/proc")
            if entry.name.isdigit() and int(entry.name) != exclude
            and _pgid_of(int(entry.name)) == pgid]
