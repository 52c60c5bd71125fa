"""End-to-end: SIGHUP re-reads selfmod.yaml, applying live settings and naming the rest."""

import signal
import time

import pytest

from tests.daemon.live import LiveDaemon

pytestmark = pytest.mark.slow


def _wait_for_new(daemon: LiveDaemon, name: str, seen: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = daemon.events(name)
        if len(events) > seen:
            return events[seen]
        time.sleep(0.1)
    raise AssertionError(f"no new {name!r} event; output:\n{''.join(daemon.raw[-30:])}")


def test_sighup_reloads_the_config_file(tmp_path):
    """Live sections are applied, restart-only ones are named, a broken file changes nothing."""
    config = tmp_path / "selfmod.yaml"
    config.write_text("version: 1\ncycle: {interval_seconds: 0.5}\n")
    daemon = LiveDaemon(["--config", str(config), "--state-dir", str(tmp_path / "s"),
                     "--metrics-port", "0", "--scope", "demo.logstats:percentile"],
                    tmp_path)
    daemon.wait_for("metrics_listening", 60)
    config.write_text("version: 1\ncycle: {interval_seconds: 2.0}\n"
                      "workload: {options: {seed: 99}}\n")
    daemon.proc.send_signal(signal.SIGHUP)
    reloaded = _wait_for_new(daemon, "config_reloaded", 0)
    assert reloaded["applied"] == ["cycle"]
    assert reloaded["restart_required"] == ["workload"]

    config.write_text("version: 1\ncycle:\n  interval_seconds: [\n")
    daemon.proc.send_signal(signal.SIGHUP)
    rejected = _wait_for_new(daemon, "config_rejected", 0)
    assert "selfmod.yaml:" in rejected["error"]
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.finish(30) == 0, "".join(daemon.raw[-30:])
