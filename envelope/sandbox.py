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
seed"). The further children replay the calls in a shuffled order
(``shuffle_seed``), so that a candidate whose outcome depends on the calls
before it shows. Declared invariants (``job.invariants``) are checked in every
child.

When all of that passed and ``job.symbolic_seconds`` is positive, one more child
runs ``-m invariants.symbolic`` through the same jail, its CPU limit and
deadline raised by the search's budget and its process limit by the threads z3
starts (:data:`SYMBOLIC_PROCESSES`): CrossHair looks for an input the
recorded calls do not cover on which the candidate differs. A re-checked
counterexample becomes the result (a ``mismatch`` with the input in ``found``),
and so does a forbidden act seen while re-checking it; anything else it says is
a note on the report. A search that times out, crashes or fails is recorded as
a note and never rejects a candidate that passed everything else.

Only a bad configuration raises (:class:`envelope.errors.LimitsError`), never a run.
"""

from __future__ import annotations

import math
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from envelope.collector import Captured
from envelope.errors import LimitsError, SandboxError
from envelope.isolation import JAIL_FAILED, Isolation
from envelope.jail import Jail, SandboxLimits
from invariants.job import LIMIT_BOUNDS, ShadowJob
from invariants.report import (
    MAX_NOTE,
    MAX_NOTES,
    Mismatch,
    ShadowReport,
    error_report,
    parse_child_report,
    tail,
)

__all__ = ["LimitsError", "Sandbox", "SandboxError", "SandboxLimits", "ShadowJob"]

SHADOW_MODULE = "invariants.shadow"
SYMBOLIC_MODULE = "invariants.symbolic"
# z3 runs its solver timeouts on threads of its own, which RLIMIT_NPROC counts (for
# the shadow user); the PID namespace and the process group's reaping still hold.
SYMBOLIC_PROCESSES = 4


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
        phases = first.phases
        for seed in job.hash_seeds[1:]:
            # Any nonzero seed will do; deriving it from the hash seed keeps runs repeatable.
            other = self._run_child(replace(job, shuffle_seed=seed + 1), seed, "replay")
            events += other.audit_events
            if other.status == "mismatch":
                return replace(other, reason=f"depends on hash seed (set iteration order) or "
                               f"on call order: under PYTHONHASHSEED={seed}, replayed in a "
                               f"shuffled order, {other.reason}",
                               hash_seeds_checked=tuple(checked), audit_events=tuple(events))
            if other.status != "ok":
                return replace(other, reason=f"under PYTHONHASHSEED={seed}: {other.reason}",
                               audit_events=tuple(events))
            # fingerprints are in the corpus's order whatever order the calls ran in
            if other.fingerprints != first.fingerprints:
                return _seed_mismatch(first, other, job.hash_seeds[0], seed)
            checked += other.hash_seeds_checked
            phases = _add_phases(phases, other.phases)
        passed = replace(first, hash_seeds_checked=tuple(checked), audit_events=tuple(events),
                         phases=phases)
        return self._symbolic(job, passed) if job.symbolic_seconds > 0 else passed

    def _symbolic(self, job: ShadowJob, passed: ShadowReport) -> ShadowReport:
        """The symbolic diff's child, after every other check passed: see the module doc."""
        extra = math.ceil(job.symbolic_seconds)
        limits = replace(self.limits,
                         cpu_seconds=min(self.limits.cpu_seconds + extra,
                                         LIMIT_BOUNDS["cpu_seconds"][2]),
                         wall_seconds=self.limits.wall_seconds + extra,
                         processes=max(self.limits.processes, SYMBOLIC_PROCESSES))
        report = self._run_child(job, job.hash_seeds[0], "full", module=SYMBOLIC_MODULE,
                                 limits=limits)
        events = (*passed.audit_events, *report.audit_events)
        passed = replace(passed, phases=_add_phases(passed.phases, report.phases))
        if self.jail.cancel is not None and self.jail.cancel.is_set():
            return replace(report, audit_events=events)  # stopping: no verdict at all
        if report.status in ("mismatch", "forbidden"):
            return replace(passed, status=report.status, reason=report.reason,
                           mismatches=report.mismatches, found=report.found,
                           notes=_add_notes(passed.notes, report.notes), audit_events=events,
                           original_times=(), candidate_times=(), loops=0)
        if report.status == "ok":
            return replace(passed, notes=_add_notes(passed.notes, report.notes),
                           found=(*passed.found, *report.found), audit_events=events)
        note = f"symbolic diff did not finish ({report.status}): {report.reason}"
        return replace(passed, notes=_add_notes(passed.notes, [note]), audit_events=events)

    def _run_child(self, job: ShadowJob, seed: int, mode: str, *,
                   module: str = SHADOW_MODULE,
                   limits: SandboxLimits | None = None) -> ShadowReport:
        nonce = secrets.token_hex(16)
        started = time.monotonic()
        limits = limits or self.limits
        jail = self.jail if limits == self.limits else \
            Jail(limits, self.isolation, self.jail.python, self.jail.tmp_root, self.jail.cancel,
                 hide_paths=self.jail.hide_paths)
        with jail.workdir() as tmpdir:
            # The corpus sits in the daemon's state directory, which the jailed user
            # cannot read and the jail's private root does not even contain: the child
            # gets its own read-only copy in its own directory instead of a window onto
            # the state directory (a bind of one file would still show its real path,
            # owner and mode, and tie the jail's layout to the daemon's).
            corpus = jail.give(tmpdir, Path(job.corpus_path), "corpus")
            # so are the inputs found for the target before, when there are any
            found = str(jail.give(tmpdir, Path(job.found_path), "found")) \
                if job.found_path and os.path.isfile(job.found_path) else ""
            payload = replace(job, corpus_path=str(corpus), found_path=found).to_json(nonce)
            argv = limits.shadow().to_argv()

            def shadow_args(result_fd: int) -> list[str]:
                return ["-m", module, "--result-fd", str(result_fd),
                        "--tmpdir", str(tmpdir), "--mode", mode, *argv]

            # The corpus's own directory is hidden too, whoever built the sandbox.
            captured = jail.run(shadow_args, tmpdir, payload=payload, hash_seed=seed,
                                read_paths=job.sys_path,
                                hide_paths=[os.path.dirname(os.path.realpath(job.corpus_path))])
        report = self._classify(captured, nonce, limits)
        if report.hash_seeds_checked not in ((), (seed,)):
            report = error_report(f"the shadow ran under hash seed "
                                  f"{report.hash_seeds_checked}, not {seed}")
        child = "symbolic" if module == SYMBOLIC_MODULE else mode
        return replace(report, stdout_tail=tail(bytes(captured.stdout)),
                       stderr_tail=tail(bytes(captured.stderr)),
                       phases={**report.phases,
                               f"child:{child}": round(time.monotonic() - started, 6)})

    def _classify(self, captured: Captured, nonce: str, limits: SandboxLimits) -> ShadowReport:
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


def _add_phases(phases: Mapping[str, float], more: Mapping[str, float]) -> dict[str, float]:
    """``phases`` (the full child's, by phase) plus the wall time of another child."""
    total = dict(phases)
    for name, seconds in more.items():
        if name.startswith("child:"):
            total[name] = total.get(name, 0.0) + seconds
    return total


def _add_notes(notes: Sequence[str], more: Sequence[str]) -> tuple[str, ...]:
    """``notes`` and then ``more``, bounded as a report's notes are; the oldest go first."""
    return tuple(note[:MAX_NOTE] for note in (*notes, *more))[-MAX_NOTES:]


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
                        actual=f"a different outcome under PYTHONHASHSEED={other_seed}, "
                               "the calls replayed in a shuffled order",
                        kind="hash_seed")
    return replace(first, status="mismatch", mismatches=(evidence,),
                   original_times=(), candidate_times=(), loops=0,
                   reason=f"depends on hash seed (set iteration order) or on call order "
                          f"(state kept between calls): call {index} gives a different "
                          f"outcome under PYTHONHASHSEED={other_seed}, replayed in a shuffled "
                          f"order, than under {seed} in the recorded order")
