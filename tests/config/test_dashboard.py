"""Tests for the Grafana dashboard, config/grafana/selfmod.json."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.config.promql import catalogue_names, metric_names, process_names

DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# What an operator must find on the dashboard: the seed's KPIs and the issue's panels.
REQUIRED_METRICS = {
    "selfmod_workload_throughput_items_per_second", "selfmod_oracle_mismatches_total",
    "selfmod_cycles_total", "selfmod_cycle_duration_seconds_bucket", "selfmod_candidates_total",
    "selfmod_rejections_total", "selfmod_swaps_total", "selfmod_rollbacks_total",
    "selfmod_target_speedup_ratio", "selfmod_active_patches", "selfmod_self_corrections_total",
    "selfmod_workload_error_free_ratio", "selfmod_rollback_detect_seconds_bucket",
    "selfmod_improvements_per_compute_second", "selfmod_verification_coverage_ratio",
    "selfmod_llm_requests_total", "selfmod_llm_tokens_total",
    "selfmod_llm_request_duration_seconds_bucket", "selfmod_policy_reloads_total",
    "selfmod_integrity_violations_total", "process_resident_memory_bytes",
    "process_cpu_seconds_total", "selfmod_daemon_threads", "selfmod_shadow_processes",
    "selfmod_shadow_resident_memory_bytes", "selfmod_child_cpu_seconds_total",
}
# Grafana replaces these before Prometheus sees the query.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
                     "$instance": ".*", "$job": "selfmod"}


@pytest.fixture(scope="module")
def dashboard(config_dir: Path) -> dict[str, Any]:
    """The dashboard, parsed (the fixture fails on invalid JSON)."""
    document: dict[str, Any] = json.loads((config_dir / "grafana" / "selfmod.json").read_text())
    return document


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets, annotations and template queries."""
    exprs = [target["expr"] for panel in _panels(dashboard)
             for target in panel.get("targets", [])]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else query or ""
        match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", text)
        if match:
            exprs.append(match.group(1))
    return exprs


def test_dashboard_is_importable_with_a_datasource_input(dashboard: dict[str, Any]) -> None:
    """Schema 39, a ${DS_PROMETHEUS} input, a stable uid, and every query on that input."""
    assert dashboard["schemaVersion"] == 39
    assert dashboard["uid"] == "selfmod"
    assert [item["name"] for item in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(t["datasource"] == DATASOURCE for t in panel["targets"]), panel["title"]


def test_panels_have_unique_ids_and_titles(dashboard: dict[str, Any]) -> None:
    """Every panel has a title and an id no other panel uses."""
    panels = list(_panels(dashboard))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    assert all(isinstance(panel.get("title"), str) and panel["title"].strip()
               for panel in panels)


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    """Panels fit the 24-column grid without covering each other."""
    taken: dict[tuple[int, int], str] = {}
    for panel in _panels(dashboard):
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']} covers {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_every_panel_queries_something(dashboard: dict[str, Any]) -> None:
    """Non-row panels have at least one query, with distinct refIds."""
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids)), panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]


def test_every_query_takes_the_job_from_the_job_variable(dashboard: dict[str, Any]) -> None:
    """No query hard-codes the scrape job: a `job` variable (default selfmod) chooses it, so
    the dashboard works under whatever job name an operator's Prometheus uses."""
    variables = [v["name"] for v in dashboard["templating"]["list"]]
    assert variables[0] == "job" and "instance" in variables
    job = dashboard["templating"]["list"][0]
    assert job["current"]["value"] == "selfmod"
    hard_coded = [expr for expr in _exprs(dashboard) if re.search(r'job\s*=\s*"', expr)]
    assert hard_coded == []
    selectors = [expr for expr in _exprs(dashboard) if "{" in expr]
    assert selectors and all('job=~"$job"' in expr for expr in selectors)


def test_queries_use_only_catalogue_metrics(dashboard: dict[str, Any]) -> None:
    """Every metric a query selects exists in daemon.metrics, the process collector or `up`."""
    known = catalogue_names() | process_names() | {"up"}
    unknown = {expr: sorted(metric_names(expr) - known) for expr in _exprs(dashboard)}
    assert {expr: names for expr, names in unknown.items() if names} == {}


def test_dashboard_shows_the_kpis_and_the_issue_panels(dashboard: dict[str, Any]) -> None:
    """Throughput, cycles, verdicts, swaps, rollbacks, speedups, KPIs, LLM and process panels."""
    used = set().union(*(metric_names(expr) for expr in _exprs(dashboard)))
    assert REQUIRED_METRICS - used == set()


def test_queries_parse_as_promql(dashboard: dict[str, Any], promtool: str,
                                 tmp_path: Path) -> None:
    """promtool parses every query (as a recording rule), Grafana variables substituted."""
    rules = []
    for number, expr in enumerate(_exprs(dashboard)):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr}"
        rules.append({"record": f"dashboard:query_{number}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
