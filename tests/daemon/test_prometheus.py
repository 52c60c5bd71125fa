"""A real Prometheus server scrapes the real daemon, with the repository's alert rules loaded."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.daemon.live import LiveDaemon, quick_config
from tests.tooling import ensure_tool

pytestmark = pytest.mark.slow

ALERTS = Path(__file__).resolve().parents[2] / "config" / "prometheus" / "alerts.yml"
SCOPE = ["demo.logstats:dedupe_sessions", "demo.logstats:unique_visitors"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Prometheus:
    """A ``prometheus`` server on loopback, scraping one target every second."""

    def __init__(self, binary: str, workdir: Path, target: str) -> None:
        config = workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [{"job_name": "selfmod",
                                "static_configs": [{"targets": [target]}]}],
        }))
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.log = (workdir / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir)
        self._logfile = workdir / "prometheus.log"

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(self.url + path + query, timeout=10) as response:
            return json.loads(response.read())

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def tail(self) -> str:
        self.log.flush()
        return "".join(self._logfile.read_text().splitlines(True)[-30:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _eventually(check: Callable[[], Any], what: str, timeout: float, tail: Callable[[], str]
                ) -> Any:
    """The first truthy result of ``check``, polling until ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen; log tail:\n{tail()}")


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[tuple[LiveDaemon, Prometheus]]:
    """The daemon on a free loopback port, and a Prometheus server scraping it."""
    binary = ensure_tool("prometheus", "prometheus")
    daemon = LiveDaemon(["--config", str(quick_config(tmp_path)), "--state-dir",
                         str(tmp_path / "state"), "--metrics-port", "0", "--scope", *SCOPE],
                        tmp_path)
    prometheus: Prometheus | None = None
    try:
        url = urllib.parse.urlsplit(daemon.wait_for("metrics_listening", 120)["url"])
        assert url.hostname == "127.0.0.1"
        prometheus = Prometheus(binary, tmp_path, url.netloc)
        _eventually(prometheus.ready, "Prometheus ready", 120, prometheus.tail)
        yield daemon, prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        daemon.proc.terminate()
        daemon.finish(60)


def _value(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_the_daemon_and_loads_the_alert_rules(
        scraped: tuple[LiveDaemon, Prometheus]) -> None:
    """Prometheus sees the target up, the workload and cycle metrics, and every alert rule."""
    daemon, prom = scraped
    up = _eventually(lambda: _value(prom.query('up{job="selfmod"}')) == 1,
                     "target up", 120, prom.tail)
    assert up
    throughput = _eventually(
        lambda: _value(prom.query("selfmod_workload_throughput_items_per_second > 0")),
        "throughput above zero", 120, prom.tail)
    assert throughput > 0
    threads = _eventually(lambda: _value(prom.query('selfmod_daemon_threads{job="selfmod"}')),
                          "daemon threads", 60, prom.tail)
    assert threads >= 4  # main loop, workload, profiler, integrity, endpoints

    wanted = {rule["alert"] for group in yaml.safe_load(ALERTS.read_text())["groups"]
              for rule in group["rules"]}

    def rules_healthy() -> set[str]:
        groups = prom.get("/api/v1/rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return {r["name"] for r in rules if r["type"] == "alerting" and r["health"] == "ok"}

    assert _eventually(lambda: rules_healthy() >= wanted, "rules evaluated", 60,
                       prom.tail) is True
    assert wanted >= {"SelfmodRollbackStorm", "SelfmodIntegrityViolation",
                      "SelfmodOracleMismatch", "SelfmodModelServerDown",
                      "SelfmodPolicyReloadFailures", "SelfmodSynthesisHalted"}

    finished = daemon.wait_for("cycle_finished", 300)
    outcome = finished["outcome"]
    cycles = _eventually(
        lambda: _value(prom.query(f'selfmod_cycles_total{{job="selfmod", outcome="{outcome}"}}')),
        "a finished cycle counted", 60, prom.tail)
    assert cycles >= 1
    firing = {a["labels"]["alertname"] for a in prom.get("/api/v1/alerts")["data"]["alerts"]
              if a["state"] == "firing"}
    assert "SelfmodDown" not in firing
