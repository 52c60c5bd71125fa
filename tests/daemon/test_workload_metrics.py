"""Tests for daemon.workload_metrics: the app's own counters, exposed at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from daemon.workload import WorkloadStats
from daemon.workload_metrics import WorkloadCollector


def test_before_any_stats_every_workload_metric_is_zero():
    """With no source (or an app that reports nothing) the four series exist at 0."""
    registry = CollectorRegistry()
    collector = WorkloadCollector(registry, wall=lambda: 1234.0)
    collector.watch(lambda: None)
    value = registry.get_sample_value
    assert value("selfmod_workload_items_total") == 0.0
    assert value("selfmod_workload_items_created") == 1234.0
    assert value("selfmod_oracle_checks_total") == 0.0
    assert value("selfmod_workload_throughput_items_per_second") == 0.0
    assert value("selfmod_workload_error_free_ratio") == 0.0


def test_each_scrape_reads_the_apps_counters():
    """Counters follow the app's stats; the error-free ratio is the share of batches served
    without error, also under its deprecated name, uptime."""
    registry = CollectorRegistry()
    stats = [WorkloadStats(items=500, throughput=250.0, errors=1, oracle_checks=7, batches=4)]
    WorkloadCollector(registry).watch(lambda: stats[-1])
    value = registry.get_sample_value
    assert value("selfmod_workload_items_total") == 500.0
    assert value("selfmod_oracle_checks_total") == 7.0
    assert value("selfmod_workload_throughput_items_per_second") == 250.0
    assert value("selfmod_workload_error_free_ratio") == 0.75
    assert value("selfmod_workload_uptime_ratio") == 0.75  # deprecated alias, same value
    stats.append(WorkloadStats(items=900, throughput=100.0, oracle_checks=9, batches=0))
    assert value("selfmod_workload_items_total") == 900.0
    assert value("selfmod_workload_error_free_ratio") == 0.75  # no batches: the last share


def test_a_counter_the_app_reports_lower_never_goes_down():
    """A restarted app counter is exposed at the highest value seen, as a counter must be."""
    registry = CollectorRegistry()
    stats = [WorkloadStats(items=500, throughput=1.0)]
    WorkloadCollector(registry).watch(lambda: stats[-1])
    assert registry.get_sample_value("selfmod_workload_items_total") == 500.0
    stats.append(WorkloadStats(items=20, throughput=1.0))
    assert registry.get_sample_value("selfmod_workload_items_total") == 500.0


def test_the_exposition_declares_counters_and_gauges():
    """The text format types the families as the catalogue does: two counters and three
    gauges, one a deprecated alias that says so."""
    registry = CollectorRegistry()
    WorkloadCollector(registry)
    text = generate_latest(registry).decode()
    assert "# TYPE selfmod_workload_items_total counter" in text
    assert "# TYPE selfmod_oracle_checks_total counter" in text
    assert "# TYPE selfmod_workload_throughput_items_per_second gauge" in text
    assert "# TYPE selfmod_workload_error_free_ratio gauge" in text
    assert "# HELP selfmod_workload_uptime_ratio DEPRECATED: use " \
        "selfmod_workload_error_free_ratio" in text
