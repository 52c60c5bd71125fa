"""Tests for the example scrape configuration, config/prometheus/prometheus.yml."""

from __future__ import annotations

import inspect
import subprocess
from pathlib import Path

import yaml

from daemon.metrics import MetricsServer


def test_promtool_check_config_passes(promtool: str, config_dir: Path) -> None:
    """promtool accepts the config and the rule file it loads."""
    result = subprocess.run([promtool, "check", "config",
                             str(config_dir / "prometheus" / "prometheus.yml")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrapes_the_daemon_where_it_listens(config_dir: Path) -> None:
    """Job selfmod scrapes the loopback address and port the metrics server defaults to."""
    document = yaml.safe_load((config_dir / "prometheus" / "prometheus.yml").read_text())
    (job,) = [job for job in document["scrape_configs"] if job["job_name"] == "selfmod"]
    defaults = inspect.signature(MetricsServer).parameters
    expected = f"{defaults['host'].default}:{defaults['port'].default}"
    assert [target for static in job["static_configs"] for target in static["targets"]] == [
        expected]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert document["rule_files"] == ["alerts.yml"]
