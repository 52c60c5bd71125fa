"""The daemon anchors its audit log when given a key, and will not append to a log that fails."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from snapshots.keys import generate_keypair
from tests.daemon.live import LiveDaemon, cli

pytestmark = pytest.mark.slow

SELFMOD = [sys.executable, "-m", "daemon.cli"]


def _config(tmp_path: Path, key: Path, checkpoints: Path) -> Path:
    config = tmp_path / "selfmod.yaml"
    config.write_text(f"version: 1\naudit: {{signing_key: '{key}', checkpoints: '{checkpoints}', "
                      "checkpoint_every: 2}\n")
    return config


def test_an_anchored_daemon_signs_checkpoints_and_refuses_a_cut_log(tmp_path: Path) -> None:
    """With a key, status says anchored and verify checks the checkpoints; after the log's
    tail is cut, the next start refuses to append, names the record, and changes nothing."""
    private, public = generate_keypair(tmp_path / "keys")
    checkpoints = tmp_path / "anchor" / "checkpoints"
    config, state = _config(tmp_path, private, checkpoints), tmp_path / "state"
    daemon = LiveDaemon(["--config", str(config), "--state-dir", str(state),
                         "--metrics-port", "0"], tmp_path)
    try:
        daemon.wait_for("metrics_listening", 60)
        status = cli("status", "--state-dir", str(state), cwd=tmp_path)
        assert status["audit"].startswith("anchored")
    finally:
        assert daemon.stop(30) == 0, daemon.tail()
    assert daemon.events("audit_checkpoint"), "no checkpoint reached the journal"
    verified = subprocess.run([*SELFMOD, "audit", "verify", "--json", "--state-dir", str(state),
                               "--public-key", str(public), "--checkpoints", str(checkpoints)],
                              capture_output=True, text=True, timeout=60, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["anchored"] is True

    log = state / "audit.log"
    lines = log.read_text().splitlines(True)
    log.write_text("".join(lines[:-2]))  # cut the last two records at a line boundary
    before = (hashlib.sha256(log.read_bytes()).hexdigest(),
              hashlib.sha256(checkpoints.read_bytes()).hexdigest())
    refused = subprocess.run([*SELFMOD, "run", "--config", str(config), "--state-dir",
                              str(state), "--metrics-port", "0", "--app", "demo.workload:main"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120,
                             check=False)
    assert refused.returncode != 0
    assert "seq" in refused.stderr and "daemon_started" not in refused.stdout, refused.stderr
    assert before == (hashlib.sha256(log.read_bytes()).hexdigest(),
                      hashlib.sha256(checkpoints.read_bytes()).hexdigest())


def test_without_a_key_the_log_is_unanchored_and_operator_actions_are_on_record(
        tmp_path: Path) -> None:
    """No key configured: status says unanchored; pause and resume through the socket are
    audited with the peer's uid and pid (status reads are not)."""
    state = tmp_path / "state"
    daemon = LiveDaemon(["--state-dir", str(state), "--metrics-port", "0"], tmp_path)
    try:
        daemon.wait_for("metrics_listening", 60)
        status = cli("status", "--state-dir", str(state), cwd=tmp_path)
        assert status["audit"] == "unanchored"
        cli("pause", "--state-dir", str(state), cwd=tmp_path)
        cli("resume", "--state-dir", str(state), cwd=tmp_path)
    finally:
        assert daemon.stop(30) == 0, daemon.tail()
    audit = [json.loads(line) for line in (state / "audit.log").read_text().splitlines()]
    requests = [r["body"] for r in audit if r["kind"] == "control_request"]
    assert [(b["route"], b["status"], b["uid"]) for b in requests] == \
        [("POST /pause", 200, os.getuid()), ("POST /resume", 200, os.getuid())]
    assert all(b["pid"] > 0 for b in requests)
