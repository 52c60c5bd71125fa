"""The real daemon speaks systemd's notify protocol to a real datagram socket, in order."""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path

import pytest

from tests.daemon.live import LiveDaemon, NotifyListener, cli, fields, quick_config, seed_version

pytestmark = pytest.mark.slow

TARGET = "demo.logstats:top_k"
SCOPE = ["demo.logstats:dedupe_sessions", "demo.logstats:unique_visitors"]


def test_ready_after_restore_status_per_cycle_watchdog_reload_and_stopping(
        tmp_path: Path) -> None:
    """READY follows the restore and the endpoints; pings, cycle STATUS, reload, STOPPING follow."""
    state = tmp_path / "state"
    version = seed_version(state, TARGET, "restored at start")
    listener = NotifyListener()
    daemon = LiveDaemon(["--config", str(quick_config(tmp_path)), "--state-dir", str(state),
                         "--metrics-port", "0", "--scope", *SCOPE],
                        tmp_path, env={"NOTIFY_SOCKET": listener.path,
                                       "WATCHDOG_USEC": "1000000"})
    try:
        ready = listener.wait_for(lambda m: "READY=1" in m.splitlines(), 120)
        # At the instant READY arrives the restore is on disk and both endpoints answer.
        audit = [json.loads(line) for line in (state / "audit.log").read_text().splitlines()]
        assert [r["body"]["version"] for r in audit if r["kind"] == "restored"] == [version]
        status = cli("status", "--state-dir", str(state), cwd=tmp_path)
        assert status["running"] and status["active"] == {TARGET: version}
        url = daemon.wait_for("metrics_listening", 10)["url"]
        with urllib.request.urlopen(url, timeout=10) as response:
            assert b"selfmod_active_patches 1.0" in response.read()
        before = listener.messages[:ready]
        assert before == ["STATUS=restoring state"], before
        assert fields(listener.messages[ready]) == {
            "READY": "1", "STATUS": "serving: 1 patches active, policy version 1"}

        # The main loop keeps the watchdog fed while it runs.
        first_ping = listener.wait_for(lambda m: m == "WATCHDOG=1", 30, after=ready)
        listener.wait_for(lambda m: m == "WATCHDOG=1", 30, after=first_ping + 1)

        # A cycle names each stage as it enters it, then its target and outcome at the end.
        done = listener.wait_for(lambda m: m.startswith("STATUS=cycle 1: ") and " → " in m,
                                 300, after=ready)
        finished = daemon.wait_for("cycle_finished", 30)
        assert listener.messages[done] == (
            f"STATUS=cycle 1: {finished['target']} → {finished['outcome']}")
        stages = [m for m in listener.messages[ready:done] if m.startswith("STATUS=cycle 1: ")]
        assert stages[0] == f"STATUS=cycle 1: {finished['target']}: recording live calls"
        assert any(": proposing (" in m for m in stages), stages
        # every log line about a target names the version too (the cycle's start, "original")
        about_targets = [e for e in list(daemon.lines) if "target" in e]
        assert finished["version"] == "original"
        assert [e for e in about_targets if not e.get("version")] == []

        # SIGHUP: RELOADING (with the monotonic clock), then READY again.
        mark = len(listener.messages)
        daemon.proc.send_signal(signal.SIGHUP)
        reloading = listener.wait_for(lambda m: m.startswith("RELOADING=1"), 30, after=mark)
        assert int(fields(listener.messages[reloading])["MONOTONIC_USEC"]) > 0
        listener.wait_for(lambda m: "READY=1" in m.splitlines(), 30, after=reloading + 1)

        # SIGTERM: STOPPING, and a clean exit.
        mark = len(listener.messages)
        daemon.proc.send_signal(signal.SIGTERM)
        listener.wait_for(lambda m: m == "STOPPING=1", 30, after=mark)
        assert daemon.finish(60) == 0, daemon.tail()
        assert listener.messages.count("STOPPING=1") == 1
    finally:
        daemon.kill()
        listener.close()
