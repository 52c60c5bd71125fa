"""No false alarms: an anchored writer killed by SIGKILL again and again leaves a sound log."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from snapshots import Anchor, load_public_key, verify_file
from snapshots.audit import REPAIRED_KIND, read_records
from snapshots.crash import CRASH_ENV, CRASH_EXIT_STATUS

from .anchor_writer import REFUSED_EXIT_STATUS
from .factories import make_anchor, public_key_path

REPO = Path(__file__).resolve().parents[2]
TOTAL = 1000
EVERY = 7


def start_writer(log: Path, anchor: Anchor, crash_at: str | None = None,
                 ) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    return subprocess.Popen(
        [sys.executable, "-m", "tests.snapshots.anchor_writer", str(log), str(anchor.key),
         str(anchor.checkpoints), str(EVERY), str(TOTAL)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_after(writer: subprocess.Popen[bytes], appends: int, pause: float) -> int:
    """Let ``writer`` report ``appends`` durable records, wait ``pause``, then SIGKILL it."""
    assert writer.stdout is not None
    try:
        for _ in range(appends):
            if not writer.stdout.readline():
                break  # it finished (or was refused) on its own
        time.sleep(pause)  # lands the kill anywhere: mid-record, mid-checkpoint, between them
        writer.send_signal(signal.SIGKILL)
    finally:
        _, err = writer.communicate(timeout=60)
    assert writer.returncode in (-signal.SIGKILL, 0), err.decode()
    return writer.returncode


def test_a_thousand_appends_under_sigkill_raise_no_false_alarm(tmp_path: Path) -> None:
    """1,000 appends by writers killed at random moments: every anchored check and reopen passes."""
    anchor = make_anchor(tmp_path, every=EVERY)
    log = tmp_path / "state" / "audit.log"
    log.parent.mkdir()
    public_key = load_public_key(public_key_path(anchor))
    rng = random.Random(16)

    torn = start_writer(log, anchor, crash_at="audit.torn_write")  # one certain torn tail
    _, err = torn.communicate(timeout=60)
    assert torn.returncode == CRASH_EXIT_STATUS, err.decode()
    checked = verify_file(log, anchor.checkpoints, public_key)
    assert (checked.ok, checked.torn_tail) == (True, True), checked.problem

    kills, torn_tails = 0, 1
    while True:
        writer = start_writer(log, anchor)
        status = kill_after(writer, rng.randint(20, 90), rng.uniform(0.0, 0.004))
        checked = verify_file(log, anchor.checkpoints, public_key)
        assert checked.ok, f"false alarm after kill {kills}: {checked.problem}"
        assert checked.anchored and checked.checkpoints > 0
        torn_tails += checked.torn_tail
        if status == 0:
            break
        kills += 1
    assert writer.returncode != REFUSED_EXIT_STATUS

    final = verify_file(log, anchor.checkpoints, public_key)
    records = list(read_records(log))
    assert (final.ok, final.torn_tail) == (True, False), final.problem
    assert final.last_checkpoint_seq == final.records == len(records)
    assert sum(r.kind == "note" for r in records) == TOTAL
    assert sum(r.kind == REPAIRED_KIND for r in records) == torn_tails
    assert kills >= 8
