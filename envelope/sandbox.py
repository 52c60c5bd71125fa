"""The sandbox: runs a candidate's shadow in a jail and turns whatever happens into a report.

:meth:`Sandbox.run` never raises for anything the child does. It starts
``python -s -P -m invariants.shadow`` (see that module for why not ``-I``) through
:class:`envelope.jail.Jail`, the one spawn path for untrusted code (``selfmod jail
run`` uses it too): every layer :func:`envelope.isolation.jail_command` can give,
an environment built from scratch, a private working directory owned by the
shadow user (removed afterwards), its own session and process group. The job
goes to the child's stdin as JSON (:mod:`invariants.job`), with the corpus path
pointing at a read-only copy in that directory (see :meth:`Sandbox._run_child`);
nothing from the child is ever unpickled. Feeding it, draining its pipes under
caps, the deadline and reaping the whole process group is
:mod:`envelope.collector`; no zombie and no process is left behind.

A failure's reason is the sandbox's own classification (exit status, signal,
limit); what the child printed is only quoted after it, escaped and bounded
(:func:`candidate_output`).

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
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from envelope.collector import Captured
from envelope.errors import LimitsError, SandboxError
from envelope.isolation import JAIL_FAILED, Isolation
from envelope.jail import Jail, SandboxLimits
from invariants.job import ShadowJob
from invariants.report import Mismatch, ShadowReport, error_report, parse_child_report, tail

__all__ = ["LimitsError", "Sandbox", "SandboxError", "SandboxLimits", "ShadowJob"]


class Sandbox:
    """Runs shadows inside the isolation this machine has."""

    def __init__(self, limits: SandboxLimits, isolation: Isolation,
                 python: str = sys.executable, tmp_root: Path | None = None,
                 cancel: threading.Event | None = None,
                 hide_paths: Sequence[str | Path] = ()) -> None:
        self.limits = limits
        self.isolation = isolation
        # The daemon passes its state directory: the target's code may live around it.
        self.jail = Jail(limits, isolation, python, tmp_root, cancel,
                         hide_paths=[str(Path(path).resolve()) for path in hide_paths])

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
        nonce = secrets.token_hex(16)
        jail = self.jail
        with jail.workdir() as tmpdir:
            # The corpus sits in the daemon's state directory, which the jailed user
            # cannot read and the jail's private root does not even contain: the child
            # gets its own read-only copy in its own directory instead of a window onto
            # the state directory (a bind of one file would still show its real path,
            # owner and mode, and tie the jail's layout to the daemon's).
            corpus = jail.give(tmpdir, Path(job.corpus_path), "corpus")
            payload = replace(job, corpus_path=str(corpus)).to_json(nonce)
            limits = self.limits.shadow().to_argv()

            def shadow_args(result_fd: int) -> list[str]:
                return ["-m", "invariants.shadow", "--result-fd", str(result_fd),
                        "--tmpdir", str(tmpdir), "--mode", mode, *limits]

            # The corpus's own directory is hidden too, whoever built the sandbox.
            captured = jail.run(shadow_args, tmpdir, payload=payload, hash_seed=seed,
                                read_paths=job.sys_path,
                                hide_paths=[os.path.dirname(os.path.realpath(job.corpus_path))])
        report = self._classify(captured, nonce)
        if report.hash_seeds_checked not in ((), (seed,)):
            report = error_report(f"the shadow ran under hash seed "
                                  f"{report.hash_seeds_checked}, not {seed}")
        return replace(report, stdout_tail=tail(bytes(captured.stdout)),
                       stderr_tail=tail(bytes(captured.stderr)))

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
            return error_report(f"the jail could not be set up (exit status {code}); "
                                f"{candidate_output(stderr)}")
        if code != 0:
            if b"MemoryError" in stderr:
                return ShadowReport(status="limit", reason=f"memory limit of "
                                    f"{limits.memory_mb} MiB reached (exit status {code} "
                                    f"with a MemoryError in its output)")
            return ShadowReport(status="crashed", reason=f"exit status {code}; "
                                f"{candidate_output(stderr)}")
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


EXCERPT_CHARS = 200


def candidate_output(data: bytes, limit: int = EXCERPT_CHARS) -> str:
    """The end of a child's stderr as evidence, never as the sandbox's own words.

    Whatever the child printed is the candidate's to choose, so it is labelled
    as such, cut to its last ``limit`` characters and escaped (``repr``: no
    newline, control character, ANSI sequence or lookalike quote reaches the
    audit log or the operator's terminal as itself). The sandbox's own
    classification (exit status, signal, limit) comes before it.
    """
    text = data.decode("utf-8", "backslashreplace").strip()
    if not text:
        return "no candidate output"
    cut = len(text) > limit
    excerpt = ascii(text[-limit:])
    return (f"candidate output (escaped, {limit} chars max"
            f"{', cut at the start' if cut else ''}): {excerpt}")


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
