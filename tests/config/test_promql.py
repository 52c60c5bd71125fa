"""Tests for the metric-name extractor the alert and dashboard checks rely on."""

from __future__ import annotations

from tests.config.promql import catalogue_names, metric_names, process_names


def test_names_skip_functions_keywords_labels_and_durations() -> None:
    """Functions, keywords, label names and values, durations and numbers are not metrics."""
    expr = ('histogram_quantile(0.95, sum by (le) (rate(selfmod_cycle_duration_seconds_bucket'
            '{job="selfmod", outcome=~"accepted|rejected"}[5m]))) > 1e3 '
            'and on (instance) selfmod_llm_up offset 10m unless absent(up{job="x"})')
    assert metric_names(expr) == {"selfmod_cycle_duration_seconds_bucket", "selfmod_llm_up", "up"}


def test_names_ignore_grafana_variables_and_strings() -> None:
    """Grafana's $__rate_interval and quoted label_replace arguments are not metrics."""
    expr = ('label_replace(sum without (reason) (increase(selfmod_rollbacks_total'
            '[$__rate_interval])), "cause", "no_cycle", "", "") / ${scale}')
    assert metric_names(expr) == {"selfmod_rollbacks_total"}


def test_catalogue_includes_labelled_metrics_without_samples() -> None:
    """Labelled counters appear in the catalogue before any label set is used."""
    names = catalogue_names()
    assert {"selfmod_rollbacks_total", "selfmod_cycle_duration_seconds_bucket",
            "selfmod_info", "selfmod_llm_up"} <= names
    assert "selfmod_rollbacks" not in names


def test_process_names_are_the_standard_collector_names() -> None:
    """The process collector contributes RSS and CPU under their standard names."""
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total"} <= process_names()
