"""The sandbox: runs a candidate's shadow in a jail and turns whatever happens into a report.

:meth:`Sandbox.run` never raises for anything the child does. It starts
``python -s -P -m invariants.shadow`` (see that module for why not ``-I``) inside
the layers :func:`envelope.isolation.jail_command` can give, with an
environment built from scratch, a private working directory (mode 0700, removed
afterwards), its own session and process group. The job goes to the child's
stdin as JSON (:mod:`invariants.job`); nothing from the child is ever unpickled.
Feeding it, draining its pipes under caps, the deadline and reaping the whole
process group is :mod:`envelope.collector`; no zombie and no process is left behind.

The corpus is replayed once per hash seed in ``job.hash_seeds``: the first child
replays, runs the property checks on generated inputs (``job.examples``; none for
an ``impure`` target) and benchmarks, each further child replays only, and a
candidate whose outcomes change with the seed is a mismatch ("depends on hash
seed"). Declared invariants (``job.invariants``) are checked in every child.

Only a bad configuration raises (:class:`envelope.errors.LimitsError`), never a run.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from envelope.collector import Captured, Collector
from envelope.errors import LimitsError, SandboxError
from envelope.isolation import JAIL_FAILED, Isolation, jail_command
from envelope.policy import SandboxPolicy
from invariants.errors import ProtocolError
from invariants.job import ShadowJob, ShadowLimits
from invariants.report import Mismatch, ShadowReport, error_report, parse_child_report, tail

CHILD_PATH = "/usr/local/bin:/usr/bin:/bin"
_POLICY = SandboxPolicy()  # the one set of defaults, the policy's

__all__ = ["LimitsError", "Sandbox", "SandboxError", "SandboxLimits", "ShadowJob"]


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one shadow process; :meth:`from_policy` fills them from the policy.

    The first six are the child's own (:class:`invariants.job.ShadowLimits`, whose
    defaults and bounds the policy shares); the rest bind the parent's side.
    ``processes`` becomes RLIMIT_NPROC, which the kernel does not enforce for
    root; when the daemon runs as root the PID namespace and the tripwire hold
    process creation instead. ``wall_seconds`` is the deadline of each child.
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


class Sandbox:
    """Runs shadows inside the isolation this machine has."""

    def __init__(self, limits: SandboxLimits, isolation: Isolation,
                 python: str = sys.executable, tmp_root: Path | None = None,
                 cancel: threading.Event | None = None) -> None:
        self.limits = limits
        self.isolation = isolation
        self.python = python
        self.tmp_root = tmp_root
        # Set by the daemon on shutdown: the running child's group is killed at once.
        self.cancel = cancel

    def run(self, job: ShadowJob) -> ShadowReport:
        """Replay, compare and benchmark ``job`` in the jail; always returns a report."""
        started = time.monotonic()
        try:
            report = self._run(job)
        except Exception as exc:  # our own failure (fork, pipes, disk): a report, not a crash
            report = error_report(f"sandbox failure: {type(exc).__name__}: {exc}")
        return replace(report, duration=time.monotonic() - started)

    def _run(self, job: ShadowJob) -> ShadowReport:
        if self.limits.require_network_namespace and not self.isolation.network_namespace:
            return error_report("the policy requires a network namespace "
                                "(sandbox.require.network_namespace) and this machine cannot "
                                "create one (unshare --net failed at start)")
        if self.limits.require_mount_namespace and not self.isolation.readonly_code:
            return error_report("the policy requires a read-only view of the code "
                                "(sandbox.require.mount_namespace) and this machine cannot "
                                "give one (the mount namespace or the read-only remount "
                                "failed at start)")
        if not job.hash_seeds:
            return error_report("no hash seed to replay under")
        first = self._run_child(job, job.hash_seeds[0], "full")
        if first.status != "ok":
            return first
        checked = list(first.hash_seeds_checked)
        events = list(first.audit_events)
        for seed in job.hash_seeds[1:]:
            other = self._run_child(job, seed, "replay")
            events += other.audit_events
            if other.status == "mismatch":
                return replace(other, reason=f"depends on hash seed (set iteration order): under "
                               f"PYTHONHASHSEED={seed}, {other.reason}",
                               hash_seeds_checked=tuple(checked), audit_events=tuple(events))
            if other.status != "ok":
                return replace(other, reason=f"under PYTHONHASHSEED={seed}: {other.reason}",
                               audit_events=tuple(events))
            if other.fingerprints != first.fingerprints:
                return _seed_mismatch(first, other, job.hash_seeds[0], seed)
            checked += other.hash_seeds_checked
        return replace(first, hash_seeds_checked=tuple(checked), audit_events=tuple(events))

    def _run_child(self, job: ShadowJob, seed: int, mode: str) -> ShadowReport:
        tmpdir = Path(tempfile.mkdtemp(prefix="selfmod-shadow-", dir=self.tmp_root))
        try:
            nonce = secrets.token_hex(16)
            captured = self._spawn_and_collect(job, seed, mode, nonce, tmpdir)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        report = self._classify(captured, nonce)
        if report.hash_seeds_checked not in ((), (seed,)):
            report = error_report(f"the shadow ran under hash seed "
                                  f"{report.hash_seeds_checked}, not {seed}")
        return replace(report, stdout_tail=tail(bytes(captured.stdout)),
                       stderr_tail=tail(bytes(captured.stderr)))

    def _command(self, tmpdir: Path, result_fd: int, mode: str) -> list[str]:
        limits = self.limits
        return [*jail_command(self.isolation, str(tmpdir), self.python),
                self.python, "-s", "-P", "-m", "invariants.shadow",
                "--result-fd", str(result_fd), "--tmpdir", str(tmpdir), "--mode", mode,
                *limits.shadow().to_argv()]

    def _spawn_and_collect(self, job: ShadowJob, seed: int, mode: str, nonce: str,
                           tmpdir: Path) -> Captured:
        payload = job.to_json(nonce)
        env = {"PATH": CHILD_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "PYTHONHASHSEED": str(seed), "PYTHONDONTWRITEBYTECODE": "1"}
        read_fd, write_fd = os.pipe()
        try:
            process = subprocess.Popen(
                self._command(tmpdir, write_fd, mode), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(write_fd,),
                cwd=tmpdir, env=env, start_new_session=True, close_fds=True)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        return Collector(process, read_fd, payload, wall_seconds=self.limits.wall_seconds,
                         output_bytes=self.limits.output_bytes,
                         result_bytes=self.limits.result_bytes, cancel=self.cancel).collect()

    def _classify(self, captured: Captured, nonce: str) -> ShadowReport:
        limits = self.limits
        if captured.cancelled:
            return error_report("cancelled: the daemon is stopping")
        if captured.timed_out:
            return ShadowReport(status="timeout", reason=f"wall-clock deadline of "
                                f"{limits.wall_seconds:g} s passed; the process group was killed")
        if captured.leftovers:
            return error_report(f"the shadow left processes behind: {captured.leftovers[:5]}")
        code = captured.returncode
        killed = -code if code < 0 else code - 128 \
            if code > 128 and self.isolation.pid_namespace else 0
        if killed:
            return _signalled(killed, limits)
        stderr = bytes(captured.stderr)
        if code == JAIL_FAILED and b"jail init:" in stderr:
            return error_report(f"the jail could not be set up: {_last_line(stderr)}")
        if code != 0:
            if b"MemoryError" in stderr:
                return ShadowReport(status="limit", reason=f"memory limit of "
                                    f"{limits.memory_mb} MiB reached (MemoryError)")
            return ShadowReport(status="crashed", reason=f"the shadow exited with status {code}: "
                                f"{_last_line(stderr)}")
        if captured.result_overflow:
            return error_report(f"the shadow's report exceeds {limits.result_bytes} bytes")
        if not captured.result:
            return ShadowReport(status="crashed",
                                reason="the shadow exited (status 0) without a report")
        return parse_child_report(bytes(captured.result), nonce=nonce,
                                  max_bytes=limits.result_bytes)


def _signalled(signum: int, limits: SandboxLimits) -> ShadowReport:
    name = _signal_name(signum)
    if signum == signal.SIGXCPU:
        return ShadowReport(status="limit", reason=f"CPU time limit of {limits.cpu_seconds} s "
                            f"exceeded ({name})")
    if signum == signal.SIGKILL:
        return ShadowReport(status="limit", reason=f"killed by {name} (CPU hard limit or out "
                            "of memory)")
    if signum == signal.SIGXFSZ:
        return ShadowReport(status="limit", reason=f"file size limit of {limits.file_size_mb} "
                            f"MiB exceeded ({name})")
    return ShadowReport(status="crashed", reason=f"the shadow was killed by {name}")


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _last_line(data: bytes) -> str:
    lines = [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def _seed_mismatch(first: ShadowReport, other: ShadowReport, seed: int,
                   other_seed: int) -> ShadowReport:
    pairs = zip(first.fingerprints, other.fingerprints, strict=False)
    index = next((i for i, (a, b) in enumerate(pairs) if a != b),
                 min(len(first.fingerprints), len(other.fingerprints)))
    evidence = Mismatch(index=index, args_repr="",
                        expected=f"outcome under PYTHONHASHSEED={seed}",
                        actual=f"a different outcome under PYTHONHASHSEED={other_seed}",
                        kind="hash_seed")
    return replace(first, status="mismatch", mismatches=(evidence,),
                   original_times=(), candidate_times=(), loops=0,
                   reason=f"depends on hash seed (set iteration order): call {index} gives a "
                          f"different outcome under PYTHONHASHSEED={other_seed} than under "
                          f"{seed}")
