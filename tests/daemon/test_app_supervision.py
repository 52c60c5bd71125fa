"""The hosted app is supervised: one that raises, cannot be called, or returns ends a batch run."""

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.daemon.live import SELFMOD, LiveDaemon, cli

pytestmark = pytest.mark.slow

APPS = '''\
import time


def _connect():
    raise RuntimeError("no database at db.internal:5432")


def crashes(stop):
    _connect()


def two_args(a, b):
    time.sleep(3600)


def returns(stop):
    return None


def busy(stop):
    while not stop.is_set():
        sum(range(1000))
'''


def _app_dir(tmp_path: Path) -> Path:
    (tmp_path / "hosted.py").write_text(APPS)
    return tmp_path


def _batch(tmp_path: Path, app: str, *extra: str) -> tuple[subprocess.CompletedProcess[str],
                                                            float, dict]:
    report = tmp_path / "report.json"
    started = time.monotonic()
    proc = subprocess.run([*SELFMOD, "run", "--app", app, "--state-dir", str(tmp_path / "s"),
                           "--metrics-port", "0", "--exit-when-idle", "--report", str(report),
                           *extra],
                          cwd=_app_dir(tmp_path), capture_output=True, text=True, timeout=90)
    return proc, time.monotonic() - started, json.loads(report.read_text())


def _log(proc: subprocess.CompletedProcess[str], event: str) -> list[dict]:
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def test_an_app_that_raises_at_start_ends_a_batch_run_with_its_error(tmp_path):
    """An app raising at start ends the batch run at once, exit 1, its error logged and reported."""
    proc, seconds, report = _batch(tmp_path, "hosted:crashes")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert seconds < 60
    app = report["app"]
    assert app["outcome"] == "failed" and app["error_type"] == "RuntimeError"
    assert app["error"] == "no database at db.internal:5432"
    assert app["where"] == "hosted.py:5 in _connect"  # the app's frame, not the daemon's
    assert "_connect()" in app["traceback"]
    assert report["exit_reason"].startswith("app hosted:crashes failed: RuntimeError")
    [line] = _log(proc, "app_exited")
    assert line["level"] == "error" and line["where"] == "hosted.py:5 in _connect"
    assert line["error_type"] == "RuntimeError" and "db.internal" in line["error"]


def test_an_app_with_the_wrong_signature_is_refused_before_start(tmp_path):
    """`def main(a, b)` is refused before the daemon starts: one line, exit 2, in the report."""
    proc, seconds, report = _batch(tmp_path, "hosted:two_args")
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert seconds < 60
    assert "daemon_started" not in proc.stdout and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "two_args(a, b) cannot be called as the daemon calls it" in line
    assert "missing a required argument: 'a'" in line and "def two_args(stop)" in line
    assert report["app"] == {"app": "hosted:two_args", "outcome": "refused",
                             "error": line.removeprefix("selfmod: error: ")}
    assert report["exit_reason"].startswith("refused: --app 'hosted:two_args'")


def test_an_app_that_returns_ends_a_batch_run(tmp_path):
    """An app that returns at once ends the batch run (exit 0): nothing is left to try."""
    proc, seconds, report = _batch(tmp_path, "hosted:returns")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert seconds < 60
    assert report["app"]["outcome"] == "returned" and report["cycles"] == []
    assert report["exit_reason"] == "idle: the app returned; nothing is left to try"
    [line] = _log(proc, "app_exited")
    assert line["level"] == "warning" and line["outcome"] == "returned"


def test_a_failed_app_shows_in_status_and_metrics_of_a_serving_daemon(tmp_path):
    """Serving (no batch mode), a failed app is in `status`, counted, and the exit code is 1."""
    state = tmp_path / "s"
    daemon = LiveDaemon(["--app", "hosted:crashes", "--state-dir", str(state),
                         "--metrics-port", "0"], _app_dir(tmp_path))
    try:
        url = daemon.wait_for("metrics_listening", 60)["url"]
        daemon.wait_for("app_exited", 30)
        status = cli("status", "--state-dir", str(state), cwd=tmp_path)
        assert status["app"]["outcome"] == "failed"
        assert status["app"]["where"] == "hosted.py:5 in _connect"
        text = subprocess.run([*SELFMOD, "status", "--state-dir", str(state)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60).stdout
        assert "app: FAILED: RuntimeError: no database at db.internal:5432 " \
               "(hosted.py:5 in _connect)" in text
        with urllib.request.urlopen(url, timeout=10) as answer:
            metrics = answer.read().decode()
        assert 'selfmod_app_exits_total{outcome="failed"} 1.0' in metrics
    finally:
        code = daemon.stop()
    assert code == 1, daemon.tail()


def test_a_scope_that_matches_no_loaded_function_is_refused(tmp_path):
    """A --scope glob matching no function once the app is imported is refused, exit 2."""
    proc = subprocess.run([*SELFMOD, "run", "--app", "hosted:busy", "--scope", "hosted:*",
                           "hostd:*", "--state-dir", str(tmp_path / "s"), "--metrics-port", "0"],
                          cwd=_app_dir(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "--scope 'hostd:*' matches no function" in line
    assert not (tmp_path / "s").exists()
