"""Metric names in PromQL expressions, and the names the daemon's catalogue exports.

promtool has no command that parses a bare expression, so names are picked out
with regular expressions: strip strings, label matchers, grouping clauses,
range selectors and Grafana variables, then keep identifiers that are neither
keywords nor function calls. Good enough for the expressions we write, and
tested on the awkward cases in test_promql.py.
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, ProcessCollector

from daemon.metrics import Metrics

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset({
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "atan2",
})

# Suffixes a client library adds to a family's name when it exposes samples.
_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects."""
    text = _STRING.sub(" ", expr)
    text = _GRAFANA_VARIABLE.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _RANGE.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def _sample_names(registry: CollectorRegistry) -> set[str]:
    # Labelled metrics expose no sample until a label set is used, so derive the
    # names from each family's type rather than from the samples alone.
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in _SAMPLE_SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


def catalogue_names() -> set[str]:
    """Every sample name ``daemon.metrics.Metrics`` can expose."""
    return _sample_names(Metrics(CollectorRegistry()).registry)


def process_names() -> set[str]:
    """The standard ``process_*`` names of prometheus_client's process collector."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return _sample_names(registry)
