"""The daemon process: start-up order, the main loop, and shutdown.

Start-up: state directory and audit log, policy, restore of accepted versions
(before the workload runs, so it starts on the code it had), the workload, the
profiler, the metrics and control endpoints, then READY to systemd. The main
loop picks the hottest in-scope target that has not been tried at its current
version, runs one cycle on it, and repeats. Shutdown (SIGTERM, ``--max-cycles``,
``--exit-when-idle``) stops the cycle in flight, the workload and every thread,
writes the report and a final audit record.

Around it: :mod:`daemon.restart` re-applies versions at start,
:mod:`daemon.operator` answers the control socket, :mod:`daemon.report` writes
the run report.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from daemon import events as ev
from daemon import logs
from daemon.budget import CycleWindow, Halt, cooldown_until, cooling_down
from daemon.config import DaemonConfig, load_config
from daemon.control import ControlServer
from daemon.cycle import Cycle, CycleReport
from daemon.errors import ConfigError, SwapError
from daemon.ledger import Ledger
from daemon.logs import EventLogger, get_logger, log_context
from daemon.metrics import Metrics, MetricsServer
from daemon.notify import Notifier, ProgressWatchdog
from daemon.operator import Operator
from daemon.profiler import HotSpot, Profiler
from daemon.report import compute_totals, run_report, write_report
from daemon.restart import reapply
from daemon.swap import SwapManager
from daemon.synthesis.base import Proposer
from daemon.verification import coverage
from daemon.workload import AppHost, MismatchWatcher, Workload
from envelope.errors import PolicyError
from envelope.integrity import IntegrityMonitor, Violation
from envelope.isolation import probe_isolation
from envelope.policy import DEFAULT_POLICY, Policy, load_policy
from envelope.sandbox import Sandbox, SandboxLimits
from envelope.watcher import PolicyWatcher
from invariants.targets import TargetError, sha256_text
from snapshots import Snapshots


@dataclass
class RunOptions:
    """What ``selfmod run`` adds to the configuration for one run."""

    max_cycles: int | None = None
    exit_when_idle: bool = False
    report: Path | None = None
    scope: tuple[str, ...] = ()  # overrides the policy's include globs when given
    idle_seconds: float = 5.0  # how long "nothing left to try" must hold before exiting
    config_path: Path | None = None  # re-read on SIGHUP
    overrides: dict[str, Any] = field(default_factory=dict)  # command-line settings, kept


@dataclass
class _Progress:
    cycles: list[CycleReport] = field(default_factory=list)
    tried: dict[tuple[str, str], str] = field(default_factory=dict)  # (target, version) -> outcome
    cooldown: dict[str, float] = field(default_factory=dict)
    throughput_before: float | None = None
    last_cycle: dict[str, Any] | None = None

    def forget_rejections(self) -> None:
        """A new policy may accept what the old one rejected: try those targets again."""
        self.tried = {k: v for k, v in self.tried.items() if v != "rejected"}
        self.cooldown.clear()


class Daemon:
    """One selfmod process hosting one workload."""

    def __init__(self, config: DaemonConfig, options: RunOptions | None = None, *,
                 registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 notifier: Notifier | None = None) -> None:
        self.config = config
        self.options = options or RunOptions()
        self.clock = clock
        self.wall = wall
        self.log = get_logger()
        self.stop_event = threading.Event()
        self.paused = threading.Event()
        # systemd's view of us (inert outside a Type=notify unit); the watchdog exists
        # only when systemd asked for one, from READY on.
        self.notifier = notifier if notifier is not None else Notifier()
        self.watchdog: ProgressWatchdog | None = None
        self._loop_thread: threading.Thread | None = None
        self._stopping_sent = False
        self.metrics = Metrics(registry)
        self.bus = ev.EventBus(on_error=self._subscriber_failed)
        self.snapshots = Snapshots(config.state_dir, clock=wall)
        self.bus.subscribe(self.metrics.on_event)
        self.bus.subscribe(EventLogger(self.log))
        self.bus.subscribe(self._audit)
        self.bus.subscribe(self._cycle_step)
        self.swapper = SwapManager()
        self.ledger = Ledger.writer(self.snapshots, wall)
        self.isolation = probe_isolation()
        self._policy_lock = threading.Lock()
        self.halted = ""  # why synthesis is halted (integrity), "" while it runs
        self.budget = CycleWindow()  # cycle start times, for budgets.cycles_per_hour
        self.budget_halt: Halt | None = None  # set while that budget is exhausted
        self._policy = self._initial_policy()
        self._policy_digest = _digest(self._policy)
        self.progress = _Progress()
        from daemon.synthesis.rules import RulesProposer

        self._rules: Proposer = RulesProposer()
        self._llm: Proposer | None = None
        self.workload: Workload | None = None
        self._workload_watch: MismatchWatcher | None = None
        self.profiler: Profiler | None = None
        self.integrity: IntegrityMonitor | None = None
        self.watcher: PolicyWatcher | None = None
        self._servers: list[Any] = []
        self.started_wall = wall()
        self.exit_reason = ""
        self.operator = Operator(self)

    # -- policy -----------------------------------------------------------------------

    def _initial_policy(self) -> Policy:
        path = self.config.policy
        policy = load_policy(path) if path is not None else DEFAULT_POLICY
        self.bus.publish(ev.PolicyLoaded(str(path or "<embedded>"), policy.version,
                                         policy.sha256))
        return policy

    def policy(self) -> Policy:
        with self._policy_lock:
            return self._policy

    def set_policy(self, policy: Policy) -> None:
        with self._policy_lock:
            self._policy = policy
            self._policy_digest = _digest(policy)
        if self.profiler is not None:
            self.profiler.set_scope(self.in_scope)

    def reload(self) -> None:
        """SIGHUP: read the config file and the policy again."""
        self._reload_config()
        self.reload_policy()

    def _reload_config(self) -> None:
        """Apply what can change in a running daemon; name what needs a restart."""
        path = self.options.config_path
        if path is None:
            return
        try:
            new = load_config(path).with_overrides(**self.options.overrides)
        except ConfigError as exc:
            self.log.error("config_rejected", error=str(exc))
            return
        changed = [f for f in DaemonConfig.model_fields
                   if getattr(new, f) != getattr(self.config, f)]
        restart = [f for f in changed if f not in _LIVE_CONFIG]
        self.config = new.model_copy(update={f: getattr(self.config, f) for f in restart})
        if "log" in changed:
            logs.configure(new.log.format, new.log.level)
        if "profiler" in changed and self.profiler is not None:
            self.profiler.interval = 1.0 / new.profiler.hz
        if {"llm", "proposer"} & set(changed):
            self._llm = None  # rebuilt with the new settings on the next cycle
        self.log.info("config_reloaded", path=str(path),
                      applied=[f for f in changed if f in _LIVE_CONFIG],
                      restart_required=restart)

    def reload_policy(self) -> None:
        """Load the policy file again (the watcher also reloads on every change)."""
        self.notifier.reloading()
        if self.watcher is not None:
            self.watcher.reload()
        else:
            self.log.info("policy_not_reloaded", reason="no policy file; embedded defaults")
        self.notifier.ready(status=self._serving_status())

    def _policy_loaded(self, policy: Policy) -> None:
        self.set_policy(policy)
        self.progress.forget_rejections()
        self.bus.publish(ev.PolicyLoaded(policy.source, policy.version, policy.sha256))

    def _policy_failed(self, error: PolicyError) -> None:
        self.bus.publish(ev.PolicyRejected(str(self.config.policy), str(error)))

    def in_scope(self, target: str) -> bool:
        if self.options.scope:
            from invariants.targets import in_scope

            return in_scope(target, self.options.scope, self.policy().scope.exclude)
        return self.policy().in_scope(target, app_scope(self.config.workload.app))

    def _policy_hashes(self) -> tuple[str, str]:
        with self._policy_lock:
            return self._policy_digest, _digest(self._policy)

    def _integrity_violation(self, violation: Violation) -> None:
        self.bus.publish(ev.IntegrityViolation(violation.path, violation.expected,
                                               violation.actual))
        self.halted = f"integrity violation: {violation.path}"
        self.metrics.synthesis_halted.set(1)

    # -- events -----------------------------------------------------------------------

    def _audit(self, event: ev.Event) -> None:
        self.snapshots.audit.append(event.kind, event.body())

    def _subscriber_failed(self, handler: Any, event: ev.Event, exc: BaseException) -> None:
        self.log.error("subscriber_failed", handler=repr(handler), event_kind=event.kind,
                       error=f"{type(exc).__name__}: {exc}")

    # -- start-up ---------------------------------------------------------------------

    def start(self) -> None:
        self.bus.publish(ev.DaemonStarted(os.getpid(), str(self.config.state_dir),
                                          self.isolation.as_dict()))
        for layer, available in self.isolation.as_dict().items():
            self.metrics.isolation.labels(layer).set(1 if available else 0)
        self.metrics.up_since.set(self.started_wall)
        self.metrics.info.info({"version": _version(), "proposer": self.config.proposer})
        self.notifier.status("restoring state")
        self.restore()
        self.workload = self._make_workload()
        self.workload.start()
        self._workload_watch = MismatchWatcher(self.workload, self._oracle_mismatch,
                                               on_error=self._thread_error)
        self._workload_watch.start()
        self.profiler = Profiler(self.in_scope, hz=self.config.profiler.hz,
                                 window_seconds=self.config.profiler.window_seconds,
                                 clock=self.clock, on_error=self._thread_error)
        self.profiler.start()
        self.integrity = IntegrityMonitor(Path(__file__).resolve().parents[1],
                                          self._policy_hashes, self._integrity_violation,
                                          on_error=self._thread_error)
        self.integrity.start()
        if self.config.policy is not None:
            self.watcher = PolicyWatcher(self.config.policy, self._policy_loaded,
                                         self._policy_failed, current=self.policy())
            self.watcher.start()
        if self.config.metrics.enabled:
            server = MetricsServer(self.metrics.registry, self.config.metrics.host,
                                   self.config.metrics.port, before_scrape=self._refresh_gauges)
            server.start()
            self._servers.append(server)
            self.log.info("metrics_listening", url=f"http://{server.host}:{server.port}/metrics")
        control = ControlServer(self.config.control_socket, self.operator.routes(),
                                self.config.control.group)
        control.start()
        self._servers.append(control)
        # Only now: systemd orders dependent units after READY, and they expect the
        # restored code, the workload and both endpoints to be there.
        self.notifier.ready(status=self._serving_status())
        self.watchdog = ProgressWatchdog.from_notifier(self.notifier, clock=self.clock,
                                                       on_error=self._thread_error)
        if self.watchdog is not None:
            self.watchdog.start()

    def _serving_status(self) -> str:
        return (f"serving: {len(self.swapper.active())} patches active, "
                f"policy version {self.policy().version}")

    def _progress(self, grace: float = 0.0) -> None:
        if self.watchdog is not None:
            self.watchdog.progress(grace)

    def _cycle_step(self, event: ev.Event) -> None:
        """Bus subscriber: an event the main loop publishes is a step of the cycle in flight.

        Each stage of a cycle (recording, one proposer call, one shadow run) ends at
        its own deadline, and the cycle publishes an event between stages; so the
        watchdog keeps pinging for one stage's bound after each event, and stops
        only when a stage is stuck past its deadline. Events from other threads
        (policy watcher, workload, control socket) say nothing about the loop.
        """
        if threading.current_thread() is self._loop_thread:
            self._progress(grace=self._stage_bound())

    def _stage_bound(self) -> float:
        """Seconds the longest single stage of a cycle may take under the policy in force."""
        policy = self.policy()
        bounds = [policy.sandbox.wall_seconds, policy.recording.timeout_seconds]
        if self._llm is not None:
            from daemon.synthesis.llm import ClientConfig

            # every attempt of one request may wait out the read timeout and a Retry-After
            attempts = 1 + ClientConfig.max_retries
            bounds.append(attempts * (self.config.llm.timeout_seconds
                                      + ClientConfig.max_retry_after))
        return max(bounds) + 10.0  # margin for the work around the stage itself

    def _make_workload(self) -> Workload:
        if not self.config.workload.app:
            raise ConfigError("no workload to host: pass --app MODULE:CALLABLE or set "
                              "workload.app in the config (config/selfmod.yaml hosts the "
                              "bundled demo)")
        return AppHost(self.config.workload.app, self.config.workload.options)

    def _oracle_mismatch(self, count: int, function: str, detail: str) -> None:
        self.bus.publish(ev.OracleMismatch(function, detail, count))

    def _thread_error(self, exc: BaseException) -> None:
        self.log.error("thread_error", error=f"{type(exc).__name__}: {exc}")

    def restore(self) -> None:
        """Re-apply accepted versions whose base hash matches the code now loaded."""
        reapply(self.snapshots.restore_plan(self.current_base_sha), self.swapper, self.ledger,
                self.bus, self.log)
        self.metrics.active_patches.set(len(self.swapper.active()))

    def current_base_sha(self, target: str) -> str | None:
        try:
            return sha256_text(self.swapper.original_source(target))
        except (TargetError, SwapError):
            return None

    # -- the main loop ----------------------------------------------------------------

    def run(self) -> int:
        """Start, loop until asked to stop, shut down; returns the process exit code."""
        self.start()
        try:
            self._loop()
        finally:
            self.shutdown()
        return 0

    def _loop(self) -> None:
        cfg = self.config.cycle
        idle_since: float | None = None
        started = self.clock()
        self._loop_thread = threading.current_thread()
        while not self.stop_event.is_set():
            wait = cfg.interval_seconds if self.progress.cycles else 0.2
            self._progress(grace=wait)  # a long configured interval is not a hang
            if self.stop_event.wait(wait):
                break
            if self.halted and self.options.exit_when_idle:
                self.exit_reason = f"halted: {self.halted}"
                break
            if self.paused.is_set() or self.halted or \
                    self.clock() - started < cfg.warmup_seconds:
                continue
            if self._budget_exhausted():
                if self.options.exit_when_idle:
                    assert self.budget_halt is not None
                    self.exit_reason = f"halted: {self.budget_halt.reason}"
                    break
                continue
            assert self.profiler is not None
            if self.profiler.window_samples() < cfg.min_samples:
                continue
            spot = self.pick()
            if spot is None:
                if self.options.exit_when_idle:
                    idle_since = idle_since if idle_since is not None else self.clock()
                    if self.clock() - idle_since >= self.options.idle_seconds:
                        self.exit_reason = "idle: no hot target left to try"
                        break
                continue
            idle_since = None
            self.run_cycle(spot)
            max_cycles = self.options.max_cycles
            if max_cycles is not None and len(self.progress.cycles) >= max_cycles:
                self.exit_reason = f"max cycles ({max_cycles}) reached"
                break

    def pick(self) -> HotSpot | None:
        """The hottest in-scope target not yet tried at its current version, not cooling down."""
        assert self.profiler is not None
        now = self.clock()
        for spot in self.profiler.ranking(self.config.cycle.min_share):
            if not self.in_scope(spot.target):
                continue
            if cooling_down(self.progress.cooldown.get(spot.target), now):
                continue
            if (spot.target, self.current_version(spot.target)) in self.progress.tried:
                continue
            return spot
        return None

    def current_version(self, target: str) -> str:
        installed = self.swapper.active().get(target)
        return installed.version if installed else "original"

    def _budget_exhausted(self) -> bool:
        """Whether budgets.cycles_per_hour forbids a cycle now; logs and gauges each change."""
        halt = self.budget.halt(self.clock(), self.policy().budgets.cycles_per_hour)
        if halt is not None and self.budget_halt is None:
            self.log.warning("synthesis_halted", reason=halt.reason)
        elif halt is None and self.budget_halt is not None:
            self.log.info("synthesis_resumed", reason="budgets.cycles_per_hour allows a cycle")
        self.budget_halt = halt
        self.metrics.synthesis_halted.set(
            1 if halt is not None or self.paused.is_set() or self.halted else 0)
        return halt is not None

    def run_cycle(self, spot: HotSpot) -> CycleReport:
        self.budget.record(self.clock())
        key = (spot.target, self.current_version(spot.target))
        if self.progress.throughput_before is None and self.workload is not None:
            stats = self.workload.stats()
            self.progress.throughput_before = stats.throughput if stats else None
        cycle = Cycle(policy=self.policy, ledger=self.ledger, swapper=self.swapper,
                      proposers=self._proposers(), sandbox=self._sandbox, bus=self.bus,
                      config=self.config.cycle, corpus_root=self.snapshots.corpus_dir,
                      stop=self.stop_event, clock=self.clock)
        # every line the cycle logs names the target and the version it starts from
        with log_context(target=spot.target, version=key[1]):
            report = cycle.run(spot)
        self.progress.cycles.append(report)
        self.notifier.status(f"cycle {len(self.progress.cycles)}: {report.target} "
                             f"→ {report.outcome}")
        # a canary rollback leaves the target to be tried again once it has cooled down
        if report.outcome not in ("aborted", "rolled_back"):
            self.progress.tried[key] = report.outcome
        if report.outcome in ("rejected", "rolled_back"):
            self.progress.cooldown[spot.target] = cooldown_until(
                self.clock(), self.policy().budgets.cooldown_seconds)
        if report.outcome == "swapped" and self.profiler is not None:
            self.profiler.reset()  # shares changed: rank again on the new code
        self.metrics.active_patches.set(len(self.swapper.active()))
        self._set_coverage()
        self.metrics.last_cycle.set(self.wall())
        for phase, seconds in report.compute_seconds.items():
            self.metrics.compute_seconds.labels(phase).inc(seconds)
        for kind, count in report.tokens.items():
            self.metrics.llm_cycle_tokens.labels(kind.removesuffix("_tokens")).inc(count)
        self.metrics.improvement_compute.set(
            compute_totals(self.progress.cycles)["improvements_per_compute_second"])
        self.progress.last_cycle = {"target": report.target, "outcome": report.outcome,
                                    "reason": report.reason, "seconds": report.seconds,
                                    "finished_at": self.wall()}
        return report

    def _proposers(self) -> list[Proposer]:
        """The configured proposers, less those the policy switches off (or plus llm it enables)."""
        policy = self.policy().proposers
        proposers: list[Proposer] = []
        if self.config.proposer in ("rules", "both") and policy.rules.enabled:
            proposers.append(self._rules)
        if self.config.proposer in ("llm", "both") or policy.llm.enabled:
            proposers.append(self._llm_proposer())
        return proposers

    def _llm_proposer(self) -> Proposer:
        if self._llm is None:
            from daemon.synthesis.llm import LLMProposer

            llm = self.config.llm
            self._llm = LLMProposer(make_llm_client(self.config, self.metrics), llm.model,
                                    samples=self.policy().proposers.llm.samples,
                                    max_tokens=llm.max_tokens, temperature=llm.temperature)
        return self._llm

    def _sandbox(self, policy: Policy) -> Sandbox:
        s = policy.sandbox
        return Sandbox(SandboxLimits.from_policy(s), self.isolation, cancel=self.stop_event)

    # -- gauges and status ------------------------------------------------------------

    def _set_coverage(self) -> None:
        """Verification coverage of the active versions (rollbacks and approvals change it)."""
        self.metrics.verification_coverage.set(
            coverage(record.evidence for record in self.ledger.active_versions()))

    def _refresh_gauges(self) -> None:
        self._set_coverage()
        if self.workload is None:
            return
        stats = self.workload.stats()
        if stats is not None:
            self.metrics.workload_throughput.set(stats.throughput)
            self._sync_counter(self.metrics.workload_items, stats.items)
            self._sync_counter(self.metrics.oracle_checks, stats.oracle_checks)
            if stats.batches:
                # the share of work served without error since start, across every swap
                self.metrics.workload_uptime.set(1 - stats.errors / stats.batches)
        self.metrics.synthesis_halted.set(
            1 if self.paused.is_set() or self.halted or self.budget_halt is not None else 0)

    @staticmethod
    def _sync_counter(counter: Any, value: float) -> None:
        current = counter._value.get()
        if value > current:
            counter.inc(value - current)

    # -- shutdown ---------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        if not self.exit_reason:
            self.exit_reason = reason
        self._notify_stopping()
        self.stop_event.set()

    def _notify_stopping(self) -> None:
        if not self._stopping_sent:
            self._stopping_sent = True
            self.notifier.stopping()

    def shutdown(self) -> None:
        self._notify_stopping()
        self.stop_event.set()
        self.operator.join(10.0)
        if self.watchdog is not None:
            self.watchdog.stop_and_join()
        if self.watcher is not None:
            self.watcher.stop()
        for thread in (self.profiler, self.integrity, self._workload_watch):
            if thread is not None:
                thread.stop_and_join()
        if self.workload is not None:
            self.workload.stop()
            if not self.workload.join(5.0):
                self.log.warning("workload_did_not_stop", timeout_seconds=5.0)
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()
        if self.options.report is not None:
            self.write_report(self.options.report)
        self.bus.publish(ev.DaemonStopped(self.exit_reason or "stopped"))

    def report(self) -> dict[str, Any]:
        """The run report (``--report``); see :mod:`daemon.report`."""
        policy = self.policy()
        return run_report(
            self.progress.cycles, started_at=self.started_wall, finished_at=self.wall(),
            exit_reason=self.exit_reason, state_dir=self.config.state_dir,
            policy={"version": policy.version, "sha256": policy.sha256},
            active={t: i.version for t, i in self.swapper.active().items()},
            throughput_before=self.progress.throughput_before,
            stats=self.workload.stats() if self.workload is not None else None)

    def write_report(self, path: Path) -> None:
        write_report(path, self.report())


def app_scope(app: str | None) -> tuple[str, ...]:
    """The default scope for a hosted app: its own top-level package, nothing else."""
    if not app:
        return ()
    package = app.partition(":")[0].split(".")[0]
    return (f"{package}:*", f"{package}.*:*")


def make_llm_client(config: DaemonConfig, metrics: Metrics | None = None) -> Any:
    """The model server client for ``config.llm`` (the API key is read, never logged)."""
    from daemon.synthesis.llm import ClientConfig, LLMClient

    llm = config.llm
    return LLMClient(ClientConfig(base_url=llm.base_url, model=llm.model,
                                  api_key_env=llm.api_key_env or "",
                                  api_key_file=str(llm.api_key_file or ""),
                                  read_timeout=llm.timeout_seconds), metrics=metrics)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("selfmod")
    except PackageNotFoundError:
        return "unknown"


def _digest(policy: Policy) -> str:
    """The hash of the policy object's content, to notice it changing in memory."""
    return hashlib.sha256(policy.model_dump_json().encode()).hexdigest()


# Config sections a running daemon applies on SIGHUP; the others (state_dir, policy
# path, metrics and control endpoints, the workload) take effect at the next start.
_LIVE_CONFIG = frozenset({"proposer", "log", "profiler", "cycle", "llm"})


def install_signal_handlers(daemon: Daemon, reload: Callable[[], None]) -> None:
    """SIGTERM/SIGINT stop the daemon gracefully; SIGHUP reloads config and policy."""

    def stop(signum: int, _frame: Any) -> None:
        daemon.request_stop(signal.Signals(signum).name)

    def hup(_signum: int, _frame: Any) -> None:
        threading.Thread(target=reload, name="selfmod-reload", daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hup)
