"""Prometheus metrics: the catalogue, and the event subscriber that feeds it.

Metrics change in three ways, and the daemon pokes none of them: domain events
(:meth:`Metrics.on_event`, a bus subscriber, including what each finished
cycle spent), values read at scrape time (:meth:`Metrics.watch`: the active
patches, verification coverage, the halt flag, and the workload's own
counters through :class:`daemon.workload_metrics.WorkloadCollector`), and
the run's description, set once at start (:meth:`Metrics.describe_run`).
Every metric lives on a registry passed in (tests use their own), never on the
global default registry. Names follow Prometheus conventions: prefix
``selfmod_``, ``_total`` for counters, ``_seconds`` for durations, base units.
The catalogue is a contract: alert rules and the Grafana dashboard use these names.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Collection
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app

from daemon import events as ev
from daemon.events import CycleOutcome
from daemon.procstats import ProcessTreeCollector
from daemon.workload_metrics import StatsSource, WorkloadCollector
from envelope.policy import IsolationRequirements

_CYCLE_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
_FAST_BUCKETS = (1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 5e-4, 1e-3, 1e-2, 0.1)
_ROLLBACK_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)


class Metrics:
    """The selfmod metric catalogue on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        self._wall = wall
        # what the cycles so far spent, for improvements per compute second
        self._compute_total = 0.0
        self._improvements = 0
        self.info = Info("selfmod", "Build and runtime information (version, proposer)",
                         registry=r)
        ProcessCollector(registry=r)  # process_* for the daemon itself
        ProcessTreeCollector(registry=r)  # its threads, and the shadows' processes
        self.up_since = Gauge("selfmod_start_time_seconds",
                              "Unix time the daemon started", registry=r)
        # Prometheus keeps its history: a head that goes back, or stops while records
        # are written, is visible outside the state directory.
        self.audit_checkpoint_seq = Gauge(
            "selfmod_audit_checkpoint_seq",
            "Audit record seq of the last signed checkpoint (0: none, or unanchored)",
            registry=r)
        # the cycle
        self.cycles = Counter("selfmod_cycles_total", "Synthesis cycles by outcome",
                              ["outcome"], registry=r)
        self.cycle_seconds = Histogram("selfmod_cycle_duration_seconds",
                                       "Wall time of one synthesis cycle",
                                       buckets=_CYCLE_BUCKETS, registry=r)
        self.last_cycle = Gauge("selfmod_last_cycle_timestamp_seconds",
                                "Unix time the last synthesis cycle finished", registry=r)
        self.candidates = Counter("selfmod_candidates_total", "Candidates by origin and verdict",
                                  ["origin", "verdict"], registry=r)
        self.rejections = Counter("selfmod_rejections_total", "Rejected candidates",
                                  ["stage", "reason"], registry=r)
        self.corrections = Counter("selfmod_self_corrections_total",
                                   "Corrected candidates requested after a rejection, by result",
                                   ["result"], registry=r)
        self.shadow_seconds = Histogram("selfmod_shadow_duration_seconds",
                                        "Wall time of one sandboxed shadow run",
                                        buckets=_CYCLE_BUCKETS, registry=r)
        self.recorded_calls = Counter("selfmod_recorded_calls_total",
                                      "Live calls recorded into corpora", registry=r)
        self.record_skips = Counter("selfmod_record_skipped_total",
                                    "Live calls not recorded, by reason", ["reason"], registry=r)
        # swaps and canaries
        self.swaps = Counter("selfmod_swaps_total", "Versions installed into the live process",
                             registry=r)
        self.swap_pause = Histogram("selfmod_swap_pause_seconds",
                                    "Time the code object swap holds the swap lock",
                                    buckets=_FAST_BUCKETS, registry=r)
        self.rollbacks = Counter("selfmod_rollbacks_total", "Rollbacks by reason", ["reason"],
                                 registry=r)
        self.rollback_seconds = Histogram("selfmod_rollback_detect_seconds",
                                          "From a faulty version's install to its rollback",
                                          buckets=_ROLLBACK_BUCKETS, registry=r)
        self.active_patches = Gauge("selfmod_active_patches", "Versions active in the live process",
                                    registry=r)
        self.speedup = Gauge("selfmod_target_speedup_ratio",
                             "Measured speedup of the active version over the original",
                             ["target"], registry=r)
        self.restored = Counter("selfmod_restored_total", "Versions re-applied or marked stale "
                                "at start", ["result"], registry=r)
        # KPIs from the seed
        self.improvement_compute = Gauge(
            "selfmod_improvements_per_compute_second",
            "Accepted improvements per second of synthesis compute (proposer + shadow)",
            registry=r)
        self.compute_seconds = Counter("selfmod_compute_seconds_total",
                                       "Seconds spent on synthesis by phase", ["phase"],
                                       registry=r)
        self.verification_coverage = Gauge(
            "selfmod_verification_coverage_ratio",
            "Share of active versions whose differential, property and declared checks all ran",
            registry=r)
        # LLM
        self.llm_requests = Counter("selfmod_llm_requests_total", "Requests to the model server",
                                    ["result"], registry=r)
        self.llm_tokens = Counter("selfmod_llm_tokens_total", "Model tokens", ["kind"], registry=r)
        self.llm_cycle_tokens = Counter("selfmod_synthesis_tokens_total",
                                        "Model tokens spent by synthesis cycles", ["kind"],
                                        registry=r)
        self.llm_seconds = Histogram("selfmod_llm_request_duration_seconds",
                                     "Model server request latency", buckets=_CYCLE_BUCKETS,
                                     registry=r)
        self.llm_up = Gauge("selfmod_llm_up", "1 when the model server answered its last health "
                            "check", registry=r)
        # envelope
        self.policy_reloads = Counter("selfmod_policy_reloads_total", "Policy loads by result",
                                      ["result"], registry=r)
        self.policy_version = Gauge("selfmod_policy_version", "Version of the policy in force",
                                    registry=r)
        self.integrity_violations = Counter("selfmod_integrity_violations_total",
                                            "Checksum mismatches of daemon code or policy",
                                            registry=r)
        self.control_refusals = Counter("selfmod_control_refusals_total",
                                        "Control socket requests refused for their peer's uid",
                                        registry=r)
        self.isolation = Gauge("selfmod_isolation_available",
                               "1 when an isolation layer is available to the sandbox", ["layer"],
                               registry=r)
        self.isolation_required = Gauge("selfmod_isolation_required",
                                        "1 when the policy in force demands the isolation layer "
                                        "(sandbox.require)", ["layer"], registry=r)
        self.synthesis_halted = Gauge("selfmod_synthesis_halted",
                                      "1 while synthesis is halted (paused, integrity, budget)",
                                      registry=r)
        # the hosted workload: items, throughput, uptime and oracle checks come from its stats
        self.workload = WorkloadCollector(r, wall)
        self.oracle_mismatches = Counter("selfmod_oracle_mismatches_total",
                                         "Demo batches whose result differed from the oracle's",
                                         registry=r)
        self.app_exits = Counter("selfmod_app_exits_total",
                                 "Ends of the hosted app's thread by outcome "
                                 "(returned, failed, stopped)",
                                 ["outcome"], registry=r)

        # Label values that alerts take increase() of exist from the start at 0, so the
        # first event is an increase and not the appearance of a series.
        for result in ("ok", "error"):
            self.policy_reloads.labels(result)
        for reason in ("operator", "canary_latency", "canary_errors", "canary_mismatch"):
            self.rollbacks.labels(reason)
        for result in ("accepted", "rejected"):
            self.corrections.labels(result)
        for outcome in ("returned", "failed", "stopped"):
            self.app_exits.labels(outcome)
        # So do the series a dashboard plots from the first scrape: every cycle outcome,
        # and every proposer kind's accepted and rejected candidates.
        for cycle_outcome in ev.CycleOutcome:
            self.cycles.labels(cycle_outcome.value)
        for kind in ORIGIN_KINDS:
            for verdict in ("accepted", "rejected"):
                self.candidates.labels(kind, verdict)

    def describe_run(self, *, started_at: float, version: str, proposer: str) -> None:
        """What this run is: its start time, selfmod's version, the configured proposer."""
        self.up_since.set(started_at)
        self.info.info({"version": version, "proposer": proposer})

    def watch(self, *, active_patches: Callable[[], int], coverage: Callable[[], float],
              halted: Callable[[], bool], workload: StatsSource,
              required_layers: Callable[[], Collection[str]] = frozenset) -> None:
        """Read these live values at each scrape instead of being told when they change."""
        for layer in sorted({layer for layers in IsolationRequirements.LAYERS.values()
                             for layer in layers}):
            self.isolation_required.labels(layer).set_function(
                _membership(layer, required_layers))
        self.active_patches.set_function(active_patches)
        self.verification_coverage.set_function(coverage)
        self.synthesis_halted.set_function(lambda: 1 if halted() else 0)
        self.workload.watch(workload)

    def on_event(self, event: ev.Event) -> None:
        """Event-bus subscriber: turn domain events into metric updates."""
        match event:
            case ev.CycleFinished():
                self._cycle_finished(event)
            case ev.DaemonStarted(isolation=isolation):
                for layer, available in isolation.items():
                    self.isolation.labels(layer).set(1 if available else 0)
            case ev.CandidateRejected(origin=origin, stage=stage, reason=reason):
                self.candidates.labels(_origin_kind(origin), "rejected").inc()
                self.rejections.labels(stage, reason).inc()
            case ev.CandidateAccepted(origin=origin, target=target, speedup=speedup):
                self.candidates.labels(_origin_kind(origin), "accepted").inc()
                self.speedup.labels(target).set(speedup)
            case ev.SelfCorrection(result=result):
                self.corrections.labels(result).inc()
            case ev.VersionSwapped(pause_seconds=pause):
                self.swaps.inc()
                self.swap_pause.observe(pause)
            case ev.VersionRolledBack(reason=reason, target=target, detect_seconds=detect):
                self.rollbacks.labels(reason).inc()
                with contextlib.suppress(KeyError):
                    self.speedup.remove(target)
                if detect > 0:
                    self.rollback_seconds.observe(detect)
            case ev.VersionRestored():
                self.restored.labels("applied").inc()
            case ev.VersionStale():
                self.restored.labels("stale").inc()
            case ev.PolicyLoaded(policy_version=version):
                self.policy_reloads.labels("ok").inc()
                self.policy_version.set(version)
            case ev.PolicyRejected():
                self.policy_reloads.labels("error").inc()
            case ev.IntegrityViolation():
                self.integrity_violations.inc()
            case ev.ControlRequest(status=403):
                self.control_refusals.inc()
            case ev.OracleMismatch(count=count):
                self.oracle_mismatches.inc(count)
            case ev.AppExited(outcome=outcome):
                self.app_exits.labels(outcome).inc()
            case ev.CorpusRecorded(calls=calls, skipped=skipped):
                self.recorded_calls.inc(calls)
                for reason, count in skipped.items():
                    self.record_skips.labels(reason).inc(count)
            case _:
                pass


    def _cycle_finished(self, event: ev.CycleFinished) -> None:
        self.cycles.labels(event.outcome).inc()
        self.cycle_seconds.observe(event.seconds)
        self.last_cycle.set(self._wall())
        for phase, seconds in event.compute_seconds.items():
            self.compute_seconds.labels(phase).inc(seconds)
        for kind, count in event.tokens.items():
            self.llm_cycle_tokens.labels(kind.removesuffix("_tokens")).inc(count)
        self._compute_total += sum(event.compute_seconds.values())
        self._improvements += event.outcome == CycleOutcome.SWAPPED
        self.improvement_compute.set(self._improvements / self._compute_total
                                     if self._compute_total else 0.0)


def mutation_score_gauge(registry: CollectorRegistry) -> Gauge:
    """``selfmod_mutation_score_ratio``: measured by ``bench/mutation.py``, not by the daemon.

    The score belongs to the gate's code, so the benchmark writes it in the Prometheus
    text format for node_exporter's textfile collector (``bench/results/mutation.prom``);
    the daemon's own registry does not carry it.
    """
    return Gauge("selfmod_mutation_score_ratio",
                 "Kill score: share of the demo targets' mutants the static gate or the shadow "
                 "told apart by behaviour (a mutant rejected only as no faster is not counted)",
                 registry=registry)


def _membership(item: str, collection: Callable[[], Collection[str]]) -> Callable[[], float]:
    """1 while ``item`` is in what ``collection`` returns, else 0 (read at each scrape)."""
    return lambda: 1.0 if item in collection() else 0.0


ORIGIN_KINDS = ("rules", "llm")  # the proposers; an origin is "<kind>:<detail>"


def _origin_kind(origin: str) -> str:
    """``rules:dedupe-seen-set`` -> ``rules``: keeps label cardinality bounded."""
    return origin.partition(":")[0] or "unknown"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        pass


class MetricsServer:
    """Serves ``/metrics`` for one registry on a loopback address, in its own thread."""

    def __init__(self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 9464,
                 before_scrape: Callable[[], Any] | None = None) -> None:
        app = make_wsgi_app(registry)
        if before_scrape is not None:
            inner = app

            def app(environ: dict[str, Any], start_response: Any) -> Any:
                before_scrape()
                return inner(environ, start_response)

        self._server = make_server(host, port, app, ThreadingWSGIServer,
                                   handler_class=_QuietHandler)
        self.port = self._server.server_port
        self.host = host
        self._thread = threading.Thread(target=self._server.serve_forever, name="selfmod-metrics",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
