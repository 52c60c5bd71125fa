"""End-to-end: `selfmod run --app MOD:CALLABLE --scope GLOB` hosts a user's own app."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

APPS = Path(__file__).parent / "apps"


def batch_run(tmp_path: Path, *args: str, timeout: float = 400) -> dict:
    """`selfmod run ARGS --exit-when-idle` on an app of tests/daemon/apps; asserts exit 0 and
    returns the run's JSON report."""
    report = tmp_path / "report.json"
    selfmod = Path(sys.executable).with_name("selfmod")
    proc = subprocess.run(
        [str(selfmod), "run", *args, "--state-dir", str(tmp_path / "state"),
         "--metrics-port", "0", "--exit-when-idle", "--report", str(report)],
        cwd=APPS, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(report.read_text())


def test_hosts_a_user_app_and_speeds_up_its_hot_function(tmp_path):
    """The user's app runs under the daemon and its hot function is swapped for a verified one."""
    data = batch_run(tmp_path, "--app", "inventory:main", "--scope", "inventory:*",
                     "--max-cycles", "4")
    assert data["active"].keys() == {"inventory:missing_skus"}, data["candidates"]
    swapped = [c for c in data["candidates"] if c["verdict"] == "swapped"]
    assert swapped[0]["ci_low"] >= 1.05
    assert data["workload"]["oracle_mismatches"] is None  # a user app has no oracle


def test_a_bad_app_spec_is_a_clear_error(tmp_path):
    """An --app that cannot be imported fails at once with a message naming it."""
    selfmod = Path(sys.executable).with_name("selfmod")
    proc = subprocess.run([str(selfmod), "run", "--app", "no_such_module:main", "--state-dir",
                           str(tmp_path / "s"), "--metrics-port", "0"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "no_such_module" in proc.stderr and "cannot import" in proc.stderr


def test_no_app_configured_is_a_clear_error_before_start(tmp_path):
    """With no --app and no workload.app, run refuses at once, names both ways, starts nothing."""
    selfmod = Path(sys.executable).with_name("selfmod")
    proc = subprocess.run([str(selfmod), "run", "--state-dir", str(tmp_path / "s"),
                           "--metrics-port", "0"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--app" in proc.stderr and "workload.app" in proc.stderr
    assert "daemon_started" not in proc.stdout
    assert not (tmp_path / "s").exists()


def test_an_endless_main_is_no_target_and_its_helpers_are_all_tried(tmp_path):
    """An app whose main loop holds most of the samples and never returns: every helper it
    calls gets a cycle within --max-cycles 6, and main is never picked (or recorded)."""
    data = batch_run(tmp_path, "--app", "busyloop:main", "--scope", "busyloop:*",
                     "--max-cycles", "6")
    tried = [cycle["target"] for cycle in data["cycles"]]
    assert "busyloop:main" not in tried, tried
    assert set(tried) == {"busyloop:checksum", "busyloop:collatz_steps", "busyloop:horner",
                          "busyloop:run_lengths"}, tried
    assert data["exit_reason"].startswith("idle"), data["exit_reason"]


def test_a_scope_that_never_runs_ends_a_batch_run_as_idle(tmp_path):
    """--exit-when-idle with a scope no running code reaches: after cycle.no_samples_seconds
    without one in-scope sample the run ends, saying why, instead of waiting forever."""
    config = tmp_path / "selfmod.yaml"
    config.write_text("version: 1\ncycle: {no_samples_seconds: 3}\n")
    data = batch_run(tmp_path, "--config", str(config), "--app", "busyloop:main",
                     "--scope", "busyloop:never_called", timeout=120)
    assert data["cycles"] == []
    assert data["exit_reason"].startswith("idle: no in-scope function ran in 3 s")
