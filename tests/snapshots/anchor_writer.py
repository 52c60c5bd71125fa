"""An anchored audit writer that test_anchor_crash runs in a subprocess and kills with SIGKILL.

``python -m tests.snapshots.anchor_writer LOG KEY CHECKPOINTS EVERY TOTAL`` opens
the log as the daemon would (checking it against its checkpoints, repairing a
genuine torn tail), then appends ``note`` records until the log holds TOTAL of
them, printing each one's seq once it is durable. It exits 3 when the open is
refused, so a test tells a false alarm from a kill.
"""

from __future__ import annotations

import sys
from pathlib import Path

from snapshots import Anchor, AuditLog, AuditRefused

REFUSED_EXIT_STATUS = 3


def main(log_path: Path, key: Path, checkpoints: Path, every: int, total: int) -> int:
    try:
        log = AuditLog(log_path, anchor=Anchor(key, checkpoints, every=every))
    except AuditRefused as exc:
        print(exc, file=sys.stderr)
        return REFUSED_EXIT_STATUS
    with log:
        done = len(log.records(kinds={"note"}))
        while done < total:
            done += 1
            record = log.append("note", {"n": done})
            print(record.seq, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]),
                  int(sys.argv[5])))
