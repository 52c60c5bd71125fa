"""The hosted workload's metrics, read from the app's own counters at scrape time.

The app counts its items and oracle checks itself (``stats()``, see
:class:`daemon.workload.WorkloadStats`); :class:`WorkloadCollector` is a
Prometheus custom collector that exposes them, the supported way to export a
count kept elsewhere, so no client-library counter has to be nudged to match
it. A count the app reports lower than before (it restarted its counters) is
exposed at the highest value seen, so the series never goes down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from daemon.workload import WorkloadStats

StatsSource = Callable[[], WorkloadStats | None]

ITEMS = ("selfmod_workload_items_total", "Items processed by the hosted workload")
THROUGHPUT = ("selfmod_workload_throughput_items_per_second",
              "Workload throughput over the last window")
ERROR_FREE = ("selfmod_workload_error_free_ratio",
              "Share of the workload's batches since start that ended without an error, "
              "across self-updates")
# The same value under its first name, which promised an uptime it never measured; kept
# for one release so dashboards and alerts can move to the new name.
UPTIME = ("selfmod_workload_uptime_ratio",
          "DEPRECATED: use selfmod_workload_error_free_ratio (the same value); removed in "
          "the next release")
ORACLE_CHECKS = ("selfmod_oracle_checks_total", "Demo batches recomputed by the frozen oracle")


class WorkloadCollector(Collector):
    """Exposes the workload's counters and gauges from its ``stats()`` at each scrape.

    Until :meth:`watch` names a source (and while the app reports nothing) the
    values are the last ones seen, 0 at first, as the client library's own
    metrics would be.
    """

    def __init__(self, registry: CollectorRegistry | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self._created = wall()
        self._source: StatsSource | None = None
        self._lock = threading.Lock()
        self._items = 0.0
        self._oracle_checks = 0.0
        self._throughput = 0.0
        self._error_free = 0.0
        if registry is not None:
            registry.register(self)

    def watch(self, source: StatsSource) -> None:
        """Read the workload's counters from ``source`` from now on."""
        self._source = source

    def _refresh(self) -> None:
        stats = self._source() if self._source is not None else None
        if stats is None:
            return
        self._items = max(self._items, float(stats.items))
        self._oracle_checks = max(self._oracle_checks, float(stats.oracle_checks))
        self._throughput = stats.throughput
        if stats.batches:
            # the share of work served without error since start, across every swap
            self._error_free = 1 - stats.errors / stats.batches

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            self._refresh()
            items, checks = self._items, self._oracle_checks
            throughput, error_free = self._throughput, self._error_free
        yield CounterMetricFamily(*ITEMS, value=items, created=self._created)
        yield GaugeMetricFamily(*THROUGHPUT, value=throughput)
        yield GaugeMetricFamily(*ERROR_FREE, value=error_free)
        yield GaugeMetricFamily(*UPTIME, value=error_free)
        yield CounterMetricFamily(*ORACLE_CHECKS, value=checks, created=self._created)

    def describe(self) -> Iterator[Metric]:
        """The families this collector exposes (for the registry's duplicate-name check)."""
        yield CounterMetricFamily(*ITEMS)
        yield GaugeMetricFamily(*THROUGHPUT)
        yield GaugeMetricFamily(*ERROR_FREE)
        yield GaugeMetricFamily(*UPTIME)
        yield CounterMetricFamily(*ORACLE_CHECKS)
