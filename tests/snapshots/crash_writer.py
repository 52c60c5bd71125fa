"""A writer that test_crash runs in a subprocess, so that it can die at a named crash point.

``python -m tests.snapshots.crash_writer DIR once`` makes one state transition:
store a new version's source, append the audit record, save the state that
activates it. ``... DIR loop`` makes such transitions until it is killed.
The crash point is chosen by the caller through ``SELFMOD_CRASH_AT``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from snapshots import Snapshots, State, Version, activate, with_version

from .factories import make_version

WRITER_CLOCK = 2000.0
NEW = make_version("def total(xs):\n    return sum(xs, 0)\n", created_at=WRITER_CLOCK)


def transition(snaps: Snapshots, version: Version) -> State:
    """The write order the daemon uses: object, audit record, state."""
    old = snaps.state.load()
    snaps.store.put_source(version.source)
    snaps.audit.append("swapped", {"target": version.target, "version": version.id,
                                   "previous": old.active.get(version.target, "")})
    return snaps.state.save(activate(with_version(old, version), version.target, version.id))


def main(state_dir: Path, mode: str) -> None:
    with Snapshots(state_dir, clock=lambda: WRITER_CLOCK) as snaps:
        if mode == "once":
            transition(snaps, NEW)
            return
        n = 0
        while True:
            n += 1
            transition(snaps, make_version(f"def total(xs):\n    return sum(xs)  # {n}\n",
                                           created_at=float(n)))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
