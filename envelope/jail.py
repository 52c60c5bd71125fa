"""The jail: the one way selfmod starts untrusted Python, for shadows and for ``selfmod jail run``.

:meth:`Jail.run` starts ``python -s -P ARGS`` inside every layer
:func:`envelope.isolation.jail_command` can give (namespaces, a private root,
the read-only view, no capabilities, the shadow user, the resource limits of
:class:`SandboxLimits`), with an environment built from scratch, in a private
working directory from :meth:`Jail.workdir` (mode 0700, owned by the shadow
user, removed afterwards), in its own session and process group, with a result
pipe on an inherited descriptor. Feeding stdin, draining the pipes under caps,
the deadline and reaping the whole group is :mod:`envelope.collector`.

:class:`envelope.sandbox.Sandbox` runs ``-m invariants.shadow`` through it;
``selfmod jail run FILE`` runs the operator's file through it, so what an
operator tests is what a candidate gets (minus the shadow's in-process
tripwire, which is not a boundary).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from envelope.collector import Captured, Collector
from envelope.errors import LimitsError
from envelope.isolation import Isolation, jail_command, jail_user
from envelope.policy import SandboxPolicy
from invariants.errors import ProtocolError
from invariants.job import ShadowLimits

CHILD_PATH = "/usr/local/bin:/usr/bin:/bin"
_POLICY = SandboxPolicy()  # the one set of defaults, the policy's


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one shadow process; :meth:`from_policy` fills them from the policy.

    The first six are the child's own (:class:`invariants.job.ShadowLimits`, whose
    defaults and bounds the policy shares); the rest bind the parent's side.
    ``processes`` becomes RLIMIT_NPROC, counted per user namespace: it binds the
    shadow user (a root daemon's jail), not uid 0 (a daemon that cannot switch
    users; there the PID namespace and the seccomp filter hold process creation).
    ``wall_seconds`` is the deadline of each child.
    """

    cpu_seconds: int = ShadowLimits.cpu_seconds
    memory_mb: int = ShadowLimits.memory_mb
    file_size_mb: int = ShadowLimits.file_size_mb
    open_files: int = ShadowLimits.open_files
    processes: int = ShadowLimits.processes
    result_bytes: int = ShadowLimits.result_bytes
    wall_seconds: float = _POLICY.wall_seconds
    output_bytes: int = _POLICY.output_bytes
    require_network_namespace: bool = False
    require_mount_namespace: bool = False  # the code must be read-only in the jail

    def __post_init__(self) -> None:
        try:
            self.shadow()
        except ProtocolError as exc:
            raise LimitsError(str(exc)) from exc
        if not self.wall_seconds > 0:
            raise LimitsError(f"sandbox.wall_seconds must be positive, not {self.wall_seconds!r}")
        if type(self.output_bytes) is not int or self.output_bytes < 1:
            raise LimitsError(f"sandbox.output_bytes must be a positive integer, "
                              f"not {self.output_bytes!r}")

    def shadow(self) -> ShadowLimits:
        """The limits the child applies to itself."""
        return ShadowLimits(cpu_seconds=self.cpu_seconds, memory_mb=self.memory_mb,
                            file_size_mb=self.file_size_mb, open_files=self.open_files,
                            processes=self.processes, result_bytes=self.result_bytes)

    @classmethod
    def from_policy(cls, policy: SandboxPolicy) -> SandboxLimits:
        """The limits a policy's ``sandbox`` section sets (the only way the daemon builds them)."""
        return cls(cpu_seconds=policy.cpu_seconds, memory_mb=policy.memory_mb,
                   file_size_mb=policy.file_size_mb, open_files=policy.open_files,
                   processes=policy.processes, wall_seconds=policy.wall_seconds,
                   output_bytes=policy.output_bytes, result_bytes=policy.result_bytes,
                   require_network_namespace=policy.require.network_namespace,
                   require_mount_namespace=policy.require.mount_namespace)


class Jail:
    """Starts Python in the jail this machine can give, under ``limits``."""

    def __init__(self, limits: SandboxLimits, isolation: Isolation,
                 python: str = sys.executable, tmp_root: Path | None = None,
                 cancel: threading.Event | None = None,
                 hide_paths: Sequence[str] = ()) -> None:
        self.limits = limits
        # Never shown to the jailed process, even inside a read path (the state dir).
        self.hide_paths = tuple(str(path) for path in hide_paths)
        self.isolation = isolation
        self.python = python
        self.tmp_root = tmp_root
        # Set by the daemon on shutdown: the running child's group is killed at once.
        self.cancel = cancel

    @contextlib.contextmanager
    def workdir(self) -> Iterator[Path]:
        """A fresh private directory for one run, owned by the user the jail runs as."""
        tmpdir = Path(tempfile.mkdtemp(prefix="selfmod-shadow-", dir=self.tmp_root))
        try:
            user = jail_user(self.isolation)
            if user is not None:
                os.chown(tmpdir, *user)
            yield tmpdir
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def give(self, workdir: Path, source: Path, name: str) -> Path:
        """Copy ``source`` into ``workdir`` as ``name``, readable (only) by the jailed user."""
        target = workdir / name
        with source.open("rb") as src, open(target, "xb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(target, 0o400)
        user = jail_user(self.isolation)
        if user is not None:
            os.chown(target, *user)
        return target

    def run(self, args: Callable[[int], Sequence[str]], workdir: Path, *, payload: bytes = b"",
            hash_seed: int = 0, read_paths: Sequence[str] = (),
            hide_paths: Sequence[str] = ()) -> Captured:
        """Run ``python -s -P *args(result_fd)`` in the jail with ``payload`` on its stdin.

        ``read_paths`` are made visible (read-only) in a private root besides the
        interpreter and its libraries; everything else of the host is absent, and
        so are ``hide_paths`` and :attr:`hide_paths` where a read path contains them.
        """
        env = {"PATH": CHILD_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "PYTHONHASHSEED": str(hash_seed), "PYTHONDONTWRITEBYTECODE": "1"}
        read_fd, write_fd = os.pipe()
        try:
            command = [*jail_command(self.isolation, str(workdir), self.python,
                                     read_paths=read_paths,
                                     hide_paths=[*self.hide_paths, *hide_paths],
                                     limits=self.limits.shadow()),
                       self.python, "-s", "-P", *args(write_fd)]
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=(write_fd,), cwd=workdir, env=env, start_new_session=True,
                close_fds=True)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        return Collector(process, read_fd, payload, wall_seconds=self.limits.wall_seconds,
                         output_bytes=self.limits.output_bytes,
                         result_bytes=self.limits.result_bytes, cancel=self.cancel).collect()

    def exit_status(self, captured: Captured) -> int:
        """The child's exit status as a shell gives it: 128 + N when killed by signal N."""
        code = captured.returncode
        return 128 - code if code < 0 else code

    def run_file(self, path: Path, args: Sequence[str] = ()) -> FileRun:
        """Run the Python file ``path`` with ``args`` in the jail (``selfmod jail run``).

        The file is copied into the run's directory first, since the jail shows
        nothing of the host but the interpreter's and selfmod's own folders.
        """
        with self.workdir() as tmpdir:
            script = self.give(tmpdir, path, path.name)
            captured = self.run(lambda _fd: [str(script), *args], tmpdir)
        return FileRun(exit_status=self.exit_status(captured), stdout=bytes(captured.stdout),
                       stderr=bytes(captured.stderr), timed_out=captured.timed_out)


@dataclass(frozen=True)
class FileRun:
    """What one file run in the jail did; outputs are tails of ``output_bytes``."""

    exit_status: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
