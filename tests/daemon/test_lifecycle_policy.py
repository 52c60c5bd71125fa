"""The envelope policy in a running daemon: budgets, hot reload, faults, SIGHUP and status.

One real `selfmod run` subprocess on the bundled demo, configured by a
`selfmod.yaml` whose `policy:` names an `envelope.yaml` in the same temporary
directory, is steered by editing that file the way operators and their tools
do (written aside, then renamed over it), and observed the way operators
observe it: the JSON log, the audit log, /metrics and `selfmod status --json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.live import SELFMOD, LiveDaemon

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CONFIG = """\
version: 1
policy: envelope.yaml
proposer: rules
log: {format: json}
metrics: {port: 0}
workload: {options: {workers: 1}}
profiler: {hz: 200}
cycle: {warmup_seconds: 1.0, interval_seconds: 0.2, min_samples: 20, max_candidates: 1}
"""
FIRST = """\
version: 1
scope:
  include: ["demo.logstats:*"]
budgets:
  cycles_per_hour: 1
"""


def second(excluded: str, version: int = 2) -> str:
    return (f"version: {version}\nscope:\n  include: [\"demo.logstats:*\"]\n"
            f"  exclude: [\"{excluded}\"]\nbudgets:\n  cycles_per_hour: 100\n")


def write_policy(path: Path, text: str, mode: int = 0o644) -> str:
    """Replace the policy the way editors do (aside, then renamed over); returns its sha256."""
    aside = path.with_name(".envelope.yaml.tmp")
    aside.write_text(text)
    aside.chmod(mode)
    os.replace(aside, path)
    return hashlib.sha256(text.encode()).hexdigest()


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def status(state: Path, cwd: Path) -> dict[str, Any]:
    out = subprocess.run([*SELFMOD, "status", "--json", "--state-dir", str(state)], cwd=cwd,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def audit_records(state: Path, kind: str) -> list[dict[str, Any]]:
    lines = (state / "audit.log").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[LiveDaemon, Path, Path]]:
    (tmp_path / "selfmod.yaml").write_text(CONFIG)
    policy = tmp_path / "envelope.yaml"
    write_policy(policy, FIRST)
    state = tmp_path / "state"
    running = LiveDaemon(["--config", str(tmp_path / "selfmod.yaml"), "--state-dir", str(state)],
                      tmp_path)
    try:
        yield running, policy, state
    finally:
        running.stop()


def test_budget_then_hot_reload_then_every_fault_keeps_the_last_good_policy(
        daemon: tuple[LiveDaemon, Path, Path], tmp_path: Path) -> None:
    """The daemon halts at its cycle budget, applies a valid edit to the next cycles, keeps the
    last good policy through every kind of bad edit, reloads on SIGHUP, and keeps running."""
    run, policy, state = daemon
    url = run.wait_for("metrics_listening", 60)["url"]
    loaded = run.wait_for("policy_loaded", 30)
    assert loaded["policy_version"] == 1 and loaded["path"] == str(policy)

    # budgets.cycles_per_hour: 1 -> one cycle, then synthesis halts and says why
    first = run.wait_for("cycle_started", 180)
    run.wait_for("cycle_finished", 300)
    halted = run.wait_for("synthesis_halted", 60)
    assert "cycles_per_hour (1)" in halted["reason"]
    assert scrape(url)["selfmod_synthesis_halted"] == 1
    shown = status(state, tmp_path)
    assert "cycles_per_hour" in shown["budget_halt"]
    text = subprocess.run([*SELFMOD, "status", "--state-dir", str(state)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert "synthesis halted: budget: " in text
    assert len(run.events("cycle_started")) == 1

    # isolation is reported by status and by the metric, layer by layer
    layers = shown["isolation"]
    assert {"network_namespace", "pid_namespace", "mount_namespace", "rlimits",
            "audit_hook"} <= set(layers)
    metrics = scrape(url)
    for layer, available in layers.items():
        assert metrics[f'selfmod_isolation_available{{layer="{layer}"}}'] == float(available)

    # a valid edit: more budget, and the first target excluded from now on
    excluded = first["target"]
    mark = len(run.lines)
    sha = write_policy(policy, second(excluded))
    reloaded = run.wait_for("policy_loaded", 30, since=mark)
    assert (reloaded["policy_version"], reloaded["sha256"]) == (2, sha)
    assert any(r["body"]["policy_version"] == 2 and r["body"]["sha256"] == sha
               for r in audit_records(state, "policy_loaded"))
    run.wait_for("synthesis_resumed", 30, since=mark)
    after = run.wait_for("cycle_started", 180, since=mark)
    assert after["target"] != excluded
    assert scrape(url)["selfmod_synthesis_halted"] == 0
    assert status(state, tmp_path)["policy"]["version"] == 2

    # every bad edit is refused with a located message; the last good policy stays
    elsewhere = tmp_path / "other.yaml"
    elsewhere.write_text(second(excluded, 9))
    faults: list[tuple[str, Callable[[], object], str]] = [
        ("syntax", lambda: write_policy(policy, "version: 3\nscope: {include: [\n"),
         f"{policy}:3:1: YAML syntax"),
        ("wrong type", lambda: write_policy(policy, "version: 3\nbudgets:\n"
                                                    "  cycles_per_hour: many\n"),
         f"{policy}:3:20: budgets.cycles_per_hour: must be a whole number"),
        ("unknown key", lambda: write_policy(policy, "version: 3\nbudgets:\n"
                                                     "  cycles_per_hours: 5\n"),
         f"{policy}:3:3: budgets.cycles_per_hours: unknown key"),
        ("empty", lambda: write_policy(policy, ""), f"{policy}:1:1: the file is empty"),
        ("deleted", policy.unlink, f"{policy}: no such file"),
        ("symlink", lambda: policy.symlink_to(elsewhere), f"{policy}: is a symbolic link"),
        # renamed over the symlink, which goes in the same step
        ("world-writable", lambda: write_policy(policy, second(excluded, 4), mode=0o666),
         f"{policy}: is world-writable"),
    ]
    errors = scrape(url)['selfmod_policy_reloads_total{result="error"}']
    for name, fault, message in faults:
        mark = len(run.lines)
        fault()
        rejected = run.wait_for("policy_rejected", 30, since=mark)
        assert rejected["error"].startswith(message), (name, rejected["error"])
        errors += 1
        assert scrape(url)['selfmod_policy_reloads_total{result="error"}'] == errors, name
        in_force = status(state, tmp_path)["policy"]
        assert (in_force["version"], in_force["sha256"]) == (2, sha), name
        assert run.proc.poll() is None, name
        assert not run.events("policy_loaded", since=mark), name
    assert len(audit_records(state, "policy_rejected")) >= len(faults)

    # SIGHUP reloads at once: the file is still world-writable, so it is refused again
    mark = len(run.lines)
    run.proc.send_signal(signal.SIGHUP)
    again = run.wait_for("policy_rejected", 30, since=mark)
    assert again["error"].startswith(f"{policy}: is world-writable")

    # fixing the mode is a change like any other: the fixed file is loaded
    mark = len(run.lines)
    policy.chmod(0o644)
    fixed = run.wait_for("policy_loaded", 30, since=mark)
    assert fixed["policy_version"] == 4
    assert status(state, tmp_path)["policy"]["version"] == 4

    # the excluded target was never started again once the edit was in force
    assert all(e["target"] != excluded for e in run.events("cycle_started", since=0)[1:])
    assert run.proc.poll() is None
    assert not run.events("thread_error")
    assert run.stop() == 0
