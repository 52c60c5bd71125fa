"""End-to-end tests: the real `selfmod` command on the bundled demo, as a user would run it."""

from __future__ import annotations

import json
import signal
import time
import urllib.request

import psutil
import pytest

from tests.daemon.live import LiveDaemon, cli, quick_config

pytestmark = pytest.mark.slow

SCOPE = ["demo.logstats:dedupe_sessions", "demo.logstats:unique_visitors"]


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory):
    """One batch run of the demo, shared by the tests that read its results."""
    root = tmp_path_factory.mktemp("batch")
    state = root / "state"
    report = root / "report.json"
    daemon = LiveDaemon(["--config", str(quick_config(root)), "--state-dir", str(state),
                         "--metrics-port", "0", "--exit-when-idle", "--max-cycles", "8",
                         "--report", str(report), "--scope", *SCOPE], root)
    listening = daemon.wait_for("metrics_listening", 60)
    daemon.wait_for("swapped", 240)
    with urllib.request.urlopen(listening["url"], timeout=10) as response:
        metrics = response.read().decode()
    code = daemon.finish(300)
    return {"root": root, "state": state, "report": report, "daemon": daemon, "code": code,
            "metrics": metrics}


def test_batch_run_swaps_faster_versions_and_exits_with_a_truthful_report(batch_run):
    """--exit-when-idle ends the run by itself, and the report lists swaps with their intervals."""
    assert batch_run["code"] == 0, "".join(batch_run["daemon"].raw[-40:])
    report = json.loads(batch_run["report"].read_text())
    assert report["format"] == 2
    assert report["app"] == {"app": "demo.workload:main", "outcome": "stopped", "error_type": "",
                             "error": "", "where": "", "traceback": ""}
    swapped = [c for c in report["candidates"] if c["verdict"] == "swapped"]
    assert swapped, report["candidates"]
    for cand in swapped:
        assert cand["ci_low"] >= 1.05 and cand["ci_low"] <= cand["speedup"] <= cand["ci_high"]
        assert cand["origin"].startswith("rules:")
    assert set(report["active"]) <= set(SCOPE)
    assert report["workload"]["oracle_mismatches"] == 0
    assert report["exit_reason"].startswith(("idle", "max cycles"))
    for cand in report["candidates"]:
        if cand["verdict"] == "rejected":
            assert cand["stage"] and cand["reason"]


def test_swaps_show_in_the_log_history_and_metrics(batch_run):
    """A swap is visible as a log event, in `selfmod history` and on /metrics."""
    swapped = batch_run["daemon"].events("swapped")
    assert swapped and all(e["target"] in SCOPE and e["version"] for e in swapped)
    history = cli("history", "--state-dir", str(batch_run["state"]), cwd=batch_run["root"])
    active = [v for v in history if v["status"] == "active"]
    assert {v["id"] for v in active} == {e["version"] for e in swapped} - {
        v["id"] for v in history if v["status"] != "active"}
    assert "selfmod_swaps_total" in batch_run["metrics"]
    swaps = [line for line in batch_run["metrics"].splitlines()
             if line.startswith("selfmod_swaps_total ")]
    assert swaps and float(swaps[0].split()[1]) >= 1


def test_active_versions_keep_the_checks_that_ran_and_coverage_is_exposed(batch_run):
    """An active version's evidence lists its checks; /metrics reports full coverage."""
    state = json.loads((batch_run["state"] / "state.json").read_text())
    assert state["active"]
    for vid in state["active"].values():
        checks = state["versions"][vid]["evidence"]["checks"]
        assert checks[0] == "differential" and {"property", "benchmark"} <= set(checks)
    ratio = [line for line in batch_run["metrics"].splitlines()
             if line.startswith("selfmod_verification_coverage_ratio ")]
    assert ratio and float(ratio[0].split()[1]) == 1.0


def test_audit_log_verifies_and_diff_shows_the_change(batch_run):
    """The audit chain verifies after a run, and `selfmod diff` shows the rewrite."""
    result = cli("audit", "verify", "--state-dir", str(batch_run["state"]),
                  cwd=batch_run["root"])
    assert result["ok"] and result["records"] > 0
    version = batch_run["daemon"].events("swapped")[0]["version"]
    diff = cli("diff", version[:12], "--state-dir", str(batch_run["state"]),
                cwd=batch_run["root"])
    assert diff["diff"].startswith("---") and "+" in diff["diff"]


def test_restart_reapplies_accepted_versions_without_synthesis(batch_run):
    """A second run on the same state re-applies the active versions and says so."""
    report = json.loads(batch_run["report"].read_text())
    active = report["active"]
    daemon = LiveDaemon(["--config", str(quick_config(batch_run["root"])),
                         "--state-dir", str(batch_run["state"]), "--metrics-port", "0",
                     "--exit-when-idle", "--max-cycles", "4", "--scope", *SCOPE],
                    batch_run["root"])
    code = daemon.finish(300)
    assert code == 0, "".join(daemon.raw[-40:])
    restored = {e["version"] for e in daemon.events("restored")}
    assert restored == set(active.values())
    assert not {e["version"] for e in daemon.events("swapped")} & restored
    state = batch_run["state"]
    records = [json.loads(line) for line in (state / "audit.log").read_text().splitlines()]
    assert {r["body"]["version"] for r in records if r["kind"] == "restored"} >= restored


def test_sigterm_stops_workload_threads_and_children_promptly(tmp_path):
    """SIGTERM during a cycle ends the daemon, its threads and every child process."""
    daemon = LiveDaemon(["--state-dir", str(tmp_path / "s"), "--metrics-port", "0",
                     "--scope", *SCOPE], tmp_path)
    daemon.wait_for("cycle_started", 120)
    parent = psutil.Process(daemon.proc.pid)
    time.sleep(1.0)  # let the cycle reach its shadow run
    children = parent.children(recursive=True)
    daemon.proc.send_signal(signal.SIGTERM)
    code = daemon.finish(10)
    assert code == 0, "".join(daemon.raw[-40:])
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []
    assert daemon.events("daemon_stopped")[0]["reason"] == "SIGTERM"
