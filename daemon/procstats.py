"""Process metrics prometheus_client cannot see: the daemon's threads and its shadow processes.

``process_*`` (prometheus_client's own collector) covers the daemon process:
resident memory, CPU, open files. The synthesis work happens in child
processes, the sandboxed shadows, which that collector never looks at; and a
thread leak in the daemon shows nowhere. This collector reads both with psutil
when Prometheus scrapes, so the numbers are as fresh as the scrape and nothing
polls in the background.

A shadow is a descendant running ``-m invariants.shadow``. The jail's wrapper
(``-m envelope.isolation init ... -- python -m invariants.shadow``) names that
module in its arguments, so its memory and files count with the shadow it
holds, but it is not a shadow itself. CPU is counted for every child process, finished ones
included (the kernel adds a child's CPU time to its parent's once it is
reaped), because a shadow lives for seconds and would otherwise be missed
between two scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

SHADOW_MODULE = "invariants.shadow"


@dataclass(frozen=True)
class ProcessSample:
    """One reading of the daemon's thread count and its children's resources."""

    threads: int
    shadows: int
    shadow_rss_bytes: int
    shadow_open_fds: int
    child_cpu_seconds: float


def sample(process: psutil.Process) -> ProcessSample:
    """Read ``process``'s threads and the resources of its descendants."""
    threads = process.num_threads()
    own = process.cpu_times()
    cpu = own.children_user + own.children_system  # children already reaped
    shadows = rss = fds = 0
    for child in process.children(recursive=True):
        try:
            with child.oneshot():
                times = child.cpu_times()
                # a live child's own time, and that of the children it has reaped
                cpu += times.user + times.system + times.children_user + times.children_system
                cmdline = child.cmdline()
                if SHADOW_MODULE not in cmdline:
                    continue
                rss += child.memory_info().rss
                fds += child.num_fds()
                if _module(cmdline) == SHADOW_MODULE:
                    shadows += 1
        except psutil.Error:  # it exited, or became unreadable, while we looked
            continue
    return ProcessSample(threads, shadows, rss, fds, cpu)


def _module(cmdline: list[str]) -> str | None:
    """The module a ``python ... -m MODULE ...`` command line runs (its first ``-m``)."""
    try:
        return cmdline[cmdline.index("-m") + 1]
    except (ValueError, IndexError):
        return None


class ProcessTreeCollector(Collector):
    """Exposes :func:`sample` of one process (the daemon's, by default) on every scrape."""

    def __init__(self, process: psutil.Process | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        self._process = process if process is not None else psutil.Process()
        self._cpu = 0.0
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterator[Metric]:
        try:
            s = sample(self._process)
        except psutil.Error:
            return
        # A child's time moves to its parent's account when it is reaped; never let a
        # reading taken mid-move look like a counter reset.
        self._cpu = max(self._cpu, s.child_cpu_seconds)
        yield GaugeMetricFamily("selfmod_daemon_threads", "Threads of the daemon process",
                                value=s.threads)
        yield GaugeMetricFamily("selfmod_shadow_processes", "Shadow processes running",
                                value=s.shadows)
        yield GaugeMetricFamily("selfmod_shadow_resident_memory_bytes",
                                "Resident memory of the running shadow processes",
                                value=s.shadow_rss_bytes)
        yield GaugeMetricFamily("selfmod_shadow_open_fds",
                                "Open file descriptors of the running shadow processes",
                                value=s.shadow_open_fds)
        yield CounterMetricFamily("selfmod_child_cpu_seconds",
                                  "CPU seconds of the daemon's child processes (the shadows, "
                                  "and any the hosted workload starts), finished or running",
                                  value=self._cpu)
