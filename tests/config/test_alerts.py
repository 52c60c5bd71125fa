"""Tests for config/prometheus/alerts.yml: valid, unit-tested, and in step with the catalogue."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.config.promql import catalogue_names, metric_names

REQUIRED_ALERTS = {
    "SelfmodRollbackStorm", "SelfmodIntegrityViolation", "SelfmodOracleMismatch",
    "SelfmodModelServerDown", "SelfmodPolicyReloadFailures", "SelfmodSynthesisHalted",
    "SelfmodDown", "SelfmodAppFailed",
}
# Prometheus's own series, not the daemon's.
PROMETHEUS_NAMES = {"up"}


def _rules(config_dir: Path) -> list[dict[str, Any]]:
    document = yaml.safe_load((config_dir / "prometheus" / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_check_rules_passes(promtool: str, config_dir: Path) -> None:
    """promtool accepts the rule file."""
    result = _run(promtool, "check", "rules", str(config_dir / "prometheus" / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass(promtool: str, config_dir: Path) -> None:
    """Every case in alerts_test.yml fires, or stays quiet, as written."""
    result = _run(promtool, "test", "rules", str(config_dir / "prometheus" / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_required_alerts_are_in_group_selfmod(config_dir: Path) -> None:
    """The group is named selfmod and holds every alert the operators rely on."""
    document = yaml.safe_load((config_dir / "prometheus" / "alerts.yml").read_text())
    assert [group["name"] for group in document["groups"]] == ["selfmod"]
    assert {rule["alert"] for rule in _rules(config_dir)} >= REQUIRED_ALERTS


def test_rules_use_only_catalogue_metrics(config_dir: Path) -> None:
    """Every metric a rule selects exists in daemon.metrics (catches drift between the two)."""
    known = catalogue_names() | PROMETHEUS_NAMES
    unknown = {rule["alert"]: sorted(metric_names(rule["expr"]) - known)
               for rule in _rules(config_dir)}
    assert {alert: names for alert, names in unknown.items() if names} == {}
    assert all(metric_names(rule["expr"]) for rule in _rules(config_dir))


@pytest.mark.parametrize("rule", _rules(Path(__file__).resolve().parents[2] / "config"),
                         ids=lambda rule: rule["alert"])
def test_alert_tells_the_operator_what_to_do(rule: dict[str, Any]) -> None:
    """Each alert has a severity, a summary, a description and a README runbook section."""
    assert rule["labels"]["severity"] in {"warning", "critical"}
    annotations = rule["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    assert annotations["runbook_url"].startswith("README.md#")


def test_every_alert_has_a_firing_and_a_quiet_case(config_dir: Path) -> None:
    """alerts_test.yml checks each alert both firing and not firing."""
    document = yaml.safe_load((config_dir / "prometheus" / "alerts_test.yml").read_text())
    cases = [case for test in document["tests"] for case in test["alert_rule_test"]]
    fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    alerts = {rule["alert"] for rule in _rules(config_dir)}
    assert alerts - fires == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown quiet"
