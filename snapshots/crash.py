"""Named crash points, for testing that every write step is crash-consistent.

Each durable write in this package calls :func:`crash_point` between its steps.
When the environment variable ``SELFMOD_CRASH_AT`` names that point, the
process ends at once with ``os._exit(137)`` (the status a SIGKILL gives): no
``finally`` blocks, no atexit handlers, no flushing, as in a real kill -9.
A test runs a writer in a subprocess with the variable set and then checks
what a restart finds on disk.

The names are ``<what>.<step done>``; :data:`CRASH_POINTS` lists them in the
order a write reaches them: the storage writes of this package
(:data:`STORAGE_POINTS`), then the daemon's swap steps (:data:`DAEMON_POINTS`).
Asking for a name not in the list is a bug in the caller and raises
``ValueError``, so a typo cannot silently disable a test.

A process crash is what these points simulate. Power loss (where un-fsynced
data vanishes) is covered by the fsyncs themselves, not by these tests.
"""

from __future__ import annotations

import os

CRASH_ENV = "SELFMOD_CRASH_AT"
CRASH_EXIT_STATUS = 137

STORAGE_POINTS: tuple[str, ...] = (
    # VersionStore.put_source: objects/<sha[:2]>/<sha>
    "object.tmp_partial",  # half the temporary file written
    "object.tmp_written",  # temporary file written and fsynced, not yet renamed
    "object.renamed",  # renamed into place, directory not yet fsynced
    # AuditLog.append: one line on an O_APPEND descriptor
    "audit.torn_write",  # half the line written: a torn tail for the next open to repair
    "audit.written",  # whole line written, not yet fsynced
    "audit.synced",  # line fsynced
    # AuditLog opening a log with a torn tail
    "audit.repair_truncated",  # torn bytes truncated, audit_repaired not yet appended
    # StateStore.save: state.json
    "state.tmp_partial",  # half the temporary file written
    "state.tmp_written",  # temporary file written and fsynced, not yet renamed
    "state.renamed",  # renamed over state.json, directory not yet fsynced
    "state.dir_synced",  # directory fsynced: the save is complete
)
# The daemon's swap steps (daemon.cycle, daemon.canary.roll_back). A swap installs the
# code, then records it; a rollback records it, then restores the code.
DAEMON_POINTS: tuple[str, ...] = (
    "swap.before_install",  # version accepted and baseline taken, code not yet installed
    "swap.after_install_before_state",  # code live in memory, state.json not yet written
    "swap.after_state",  # state.json names the version active, swapped not yet audited
    "rollback.after_state",  # state.json says rolled back, the code still installed
    "rollback.after_uninstall",  # original code restored, rolled_back not yet audited
)
CRASH_POINTS: tuple[str, ...] = STORAGE_POINTS + DAEMON_POINTS


def armed(name: str) -> bool:
    """Whether the process is asked to crash at ``name`` (for steps that must half-happen first)."""
    if name not in CRASH_POINTS:
        raise ValueError(f"unknown crash point {name!r}; known: {', '.join(CRASH_POINTS)}")
    return os.environ.get(CRASH_ENV) == name


def crash_point(name: str) -> None:
    """End the process at once if ``SELFMOD_CRASH_AT`` equals ``name``; otherwise do nothing."""
    if armed(name):
        os._exit(CRASH_EXIT_STATUS)
