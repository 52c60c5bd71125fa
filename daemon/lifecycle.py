"""The daemon process: start-up order, the main loop, and shutdown.

Start-up: state directory and audit log, policy, restore of accepted versions
(before the workload runs, so it starts on the code it had), the workload, the
profiler, the metrics and control endpoints, then READY to systemd. The metrics
port is bound first, so a port in use refuses the start before anything runs.
The hosted app is supervised: when it raises or returns, the daemon logs,
counts and reports it, and in batch mode (``--exit-when-idle``) ends the run,
with exit code 1 when the app failed. The main
loop picks the hottest in-scope target that has not been tried at its current
version, runs one cycle on it, and repeats. Shutdown (SIGTERM, ``--max-cycles``,
``--exit-when-idle``) stops the cycle in flight, the workload and every thread,
writes the report and a final audit record.

Around it: :mod:`daemon.selection` picks targets and keeps the budgets,
:mod:`daemon.rollout` puts versions live for the cycle and the operator alike,
:mod:`daemon.operator` answers the control socket, :mod:`daemon.metrics`
follows the events, :mod:`daemon.proposers` builds what a cycle works with,
:mod:`daemon.restart` re-applies versions at start, :mod:`daemon.report` writes
the run report.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from daemon import events as ev
from daemon import logs
from daemon.config import DaemonConfig
from daemon.control import ControlServer, Peer
from daemon.cycle import Cycle
from daemon.errors import ConfigError
from daemon.ledger import Ledger
from daemon.logs import EventLogger, get_logger, log_context
from daemon.metrics import Metrics, MetricsServer
from daemon.notify import Liveness, Notifier
from daemon.operator import Operator
from daemon.outcome import CycleReport
from daemon.preflight import metrics_port_refused
from daemon.profiler import HotSpot, Profiler
from daemon.progress import CycleProgress
from daemon.proposers import Proposers, make_sandbox
from daemon.proposers import make_llm_client as make_llm_client  # `selfmod llm check` uses it
from daemon.reload import PolicyInForce, reread_config
from daemon.report import run_report, write_report
from daemon.restart import reapply
from daemon.rollout import Followups, Rollouts
from daemon.selection import ORIGINAL, Selection
from daemon.status import StatusSnapshot
from daemon.swap import SwapManager
from daemon.verification import coverage
from daemon.workload import AppHost, MismatchWatcher, Workload, WorkloadStats
from envelope.errors import PolicyError
from envelope.integrity import IntegrityMonitor, Violation
from envelope.isolation import probe_isolation
from envelope.policy import DEFAULT_POLICY, Policy, load_policy
from envelope.sandbox import Sandbox
from envelope.watcher import PolicyWatcher
from snapshots import Snapshots
from snapshots.checkpoint import Checkpoint

WAIT_NOTICE_SECONDS = 10.0  # how often the wait for in-scope samples is said


@dataclass
class RunOptions:
    """What ``selfmod run`` adds to the configuration for one run."""

    max_cycles: int | None = None
    allow_policy_downgrade: bool = False  # a reload may lower the policy's version (audited)
    exit_when_idle: bool = False
    report: Path | None = None
    scope: tuple[str, ...] = ()  # overrides the policy's include globs when given
    idle_seconds: float = 5.0  # how long "nothing left to try" must hold before exiting
    config_path: Path | None = None  # re-read on SIGHUP
    overrides: dict[str, Any] = field(default_factory=dict)  # command-line settings, kept


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
        self.liveness = Liveness(notifier if notifier is not None else Notifier(),
                                 stage_bound=self._stage_bound, clock=clock,
                                 on_error=self._thread_error)
        self.metrics = Metrics(registry, wall=wall)
        self.bus = ev.EventBus(on_error=self._subscriber_failed)
        self.snapshots = Snapshots(config.state_dir, clock=wall,
                                   anchor=config.audit_anchor(os.environ),
                                   on_checkpoint=self._checkpointed)
        self.bus.subscribe(self.metrics.on_event)
        self.bus.subscribe(EventLogger(self.log))
        self.bus.subscribe(self._audit)
        self.bus.subscribe(self.liveness.on_event)
        self.in_flight = CycleProgress(self.liveness.status, clock)
        self.bus.subscribe(self.in_flight.on_event)
        self.swapper = SwapManager()
        self.ledger = Ledger.writer(self.snapshots, wall)
        self.isolation = probe_isolation()
        self.halted = ""  # why synthesis is halted (integrity), "" while it runs
        self._policy = PolicyInForce(self._initial_policy())
        self.selection = Selection(policy=self.policy, current_version=self.current_version,
                                   log=self.log, scope=self.options.scope,
                                   app=config.workload.app, clock=clock,
                                   excluded=lambda: self.rollouts.excluded())
        self.rollouts = Rollouts(self.swapper, self.ledger, self.bus, self.policy,
                                 stop=self.stop_event, clock=clock,
                                 followups=Followups(regressed=self.selection.cool_down,
                                                     live=self._rank_again,
                                                     refused=self.selection.refused))
        self.proposers = Proposers(self.metrics)
        self.cycles: list[CycleReport] = []
        self.throughput_before: float | None = None
        self.last_cycle: dict[str, Any] | None = None
        self._not_returning: set[str] = set()  # targets said to be no target, once each
        self.workload: Workload | None = None
        self.app_exit: ev.AppExited | None = None  # set from the app's thread when it ends
        self._workload_watch: MismatchWatcher | None = None
        self.profiler: Profiler | None = None
        self.integrity: IntegrityMonitor | None = None
        self.watcher: PolicyWatcher | None = None
        self._servers: list[Any] = []
        self.started_wall = wall()
        self.exit_reason = ""
        self.operator = Operator(paused=self.paused, status=self.status,
                                 rollouts=self.rollouts, in_scope=self.in_scope, log=self.log)
        self.metrics.watch(active_patches=lambda: len(self.swapper.active()),
                           coverage=self._coverage, halted=self._synthesis_halted,
                           workload=self._workload_stats,
                           required_layers=lambda: self.policy().sandbox.require.layers())

    def _control_request(self, peer: Peer, method: str, path: str, status: int) -> None:
        """Put on the record who changed the daemon's state, or tried to use the socket."""
        if method != "GET" or status == 403:
            self.bus.publish(ev.ControlRequest(f"{method} {path}", peer.uid, peer.pid, status))

    def _checkpointed(self, checkpoint: Checkpoint) -> None:
        """A signed checkpoint of the audit chain: a copy goes to the journal and a gauge.

        Runs under the audit log's lock: it must not write to the log itself.
        """
        self.log.info("audit_checkpoint", seq=checkpoint.seq, hash=checkpoint.hash,
                      key=checkpoint.key, sig=checkpoint.sig)
        self.metrics.audit_checkpoint_seq.set(checkpoint.seq)

    # -- policy -----------------------------------------------------------------------

    def _initial_policy(self) -> Policy:
        path = self.config.policy
        policy = load_policy(path) if path is not None else DEFAULT_POLICY
        self.bus.publish(ev.PolicyLoaded(str(path or "<embedded>"), policy.version,
                                         policy.sha256))
        return policy

    def policy(self) -> Policy:
        return self._policy.get()

    def set_policy(self, policy: Policy) -> None:
        self._policy.replace(policy)
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
            change = reread_config(path, self.config, self.options.overrides)
        except ConfigError as exc:
            self.log.error("config_rejected", error=str(exc))
            return
        new = self.config = change.config
        if "log" in change.applied:
            logs.configure(new.log.format, new.log.level)
        if "profiler" in change.applied and self.profiler is not None:
            self.profiler.interval = 1.0 / new.profiler.hz
        if {"llm", "proposer"} & set(change.applied):
            self.proposers.forget_llm()  # rebuilt with the new settings on the next cycle
        self.log.info("config_reloaded", path=str(path), applied=list(change.applied),
                      restart_required=list(change.restart_required))

    def reload_policy(self) -> None:
        """Load the policy file again (the watcher also reloads on every change)."""
        self.liveness.reloading()
        if self.watcher is not None:
            self.watcher.reload()
        else:
            self.log.info("policy_not_reloaded", reason="no policy file; embedded defaults")
        self.liveness.ready(status=self._serving_status())

    def _policy_loaded(self, policy: Policy) -> None:
        self.set_policy(policy)
        self.selection.forget_rejections()
        self.bus.publish(ev.PolicyLoaded(policy.source, policy.version, policy.sha256))

    def _policy_failed(self, error: PolicyError) -> None:
        self.bus.publish(ev.PolicyRejected(str(self.config.policy), str(error)))

    def in_scope(self, target: str) -> bool:
        return self.selection.in_scope(target)

    def _integrity_violation(self, violation: Violation) -> None:
        self.bus.publish(ev.IntegrityViolation(violation.path, violation.expected,
                                               violation.actual))
        self.halted = f"integrity violation: {violation.path}"

    # -- events -----------------------------------------------------------------------

    def _audit(self, event: ev.Event) -> None:
        self.snapshots.audit.append(event.kind, event.body())

    def _subscriber_failed(self, handler: Any, event: ev.Event, exc: BaseException) -> None:
        self.log.error("subscriber_failed", handler=repr(handler), event_kind=event.kind,
                       error=f"{type(exc).__name__}: {exc}")

    # -- start-up ---------------------------------------------------------------------

    def start(self) -> None:
        metrics = self._bind_metrics()
        self.bus.publish(ev.DaemonStarted(os.getpid(), str(self.config.state_dir),
                                          self.isolation.as_dict(),
                                          self.options.allow_policy_downgrade))
        self.metrics.describe_run(started_at=self.started_wall, version=_version(),
                                  proposer=self.config.proposer)
        self.liveness.status("restoring state")
        self.restore()
        self.proposers.prepare(self.config, self.policy())
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
                                          self._policy.hashes, self._integrity_violation,
                                          on_error=self._thread_error)
        self.integrity.start()
        if self.config.policy is not None:
            self.watcher = PolicyWatcher(self.config.policy, self._policy_loaded,
                                         self._policy_failed, current=self.policy(),
                                         allow_downgrade=self.options.allow_policy_downgrade)
            self.watcher.start()
        if metrics is not None:
            metrics.start()
            self._servers.append(metrics)
            self.log.info("metrics_listening", url=f"http://{metrics.host}:{metrics.port}/metrics")
        control = ControlServer(self.config.control_socket, self.operator.routes(),
                                self.config.control.group, on_request=self._control_request)
        control.start()
        self._servers.append(control)
        # Only now: systemd orders dependent units after READY, and they expect the
        # restored code, the workload and both endpoints to be there.
        self.liveness.ready(status=self._serving_status())
        self.liveness.start_watchdog()

    def _bind_metrics(self) -> MetricsServer | None:
        """The metrics endpoint, listening but not yet serving; a port in use refuses the start."""
        if not self.config.metrics.enabled:
            return None
        host, port = self.config.metrics.host, self.config.metrics.port
        try:
            return MetricsServer(self.metrics.registry, host, port)
        except OSError as exc:
            raise metrics_port_refused(host, port, exc) from None

    def _serving_status(self) -> str:
        return (f"serving: {len(self.swapper.active())} patches active, "
                f"policy version {self.policy().version}")

    def _stage_bound(self) -> float:
        """Seconds the longest single stage of a cycle may take under the policy in force."""
        policy = self.policy()
        bounds = [policy.sandbox.wall_seconds, policy.recording.timeout_seconds]
        if self.proposers.uses_llm:
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
        return AppHost(self.config.workload.app, self.config.workload.options,
                       on_exit=self._app_exited)

    def _app_exited(self, exited: ev.AppExited) -> None:
        """The app's thread ended (called from it): on the record, and the loop looks."""
        self.app_exit = exited
        self.bus.publish(exited)
        if exited.outcome != "stopped":  # at shutdown systemd already shows "stopping"
            self.liveness.status(exited.describe())

    def _oracle_mismatch(self, count: int, function: str, detail: str) -> None:
        self.bus.publish(ev.OracleMismatch(function, detail, count))

    def _thread_error(self, exc: BaseException) -> None:
        self.log.error("thread_error", error=f"{type(exc).__name__}: {exc}")

    def restore(self) -> None:
        """Re-apply accepted versions whose base hash matches the code now loaded."""
        reapply(self.snapshots.restore_plan(self.rollouts.base_sha), self.swapper, self.ledger,
                self.bus, self.log)

    # -- the main loop ----------------------------------------------------------------

    def run(self) -> int:
        """Start, loop until asked to stop, shut down; returns the process exit code."""
        self.start()
        try:
            self._loop()
        finally:
            self.shutdown()
        return 1 if self.app_exit is not None and self.app_exit.failed else 0

    def _loop(self) -> None:
        cfg = self.config.cycle
        idle_since: float | None = None
        waiting: tuple[float, float] | None = None  # (since, last said) while short of samples
        started = self.clock()
        self.liveness.loop_started()
        while not self.stop_event.is_set():
            max_cycles = self.options.max_cycles
            if max_cycles is not None and len(self.cycles) >= max_cycles:
                # checked before a cycle too: --max-cycles 0 runs none
                self.exit_reason = f"max cycles ({max_cycles}) reached"
                break
            wait = cfg.interval_seconds if self.cycles else 0.2
            self.liveness.progress(grace=wait)  # a long configured interval is not a hang
            if self.stop_event.wait(wait):
                break
            if self.halted and self.options.exit_when_idle:
                self.exit_reason = f"halted: {self.halted}"
                break
            if self.app_exit is not None and self.options.exit_when_idle:
                # an app that is gone makes no more calls to profile or record
                self.exit_reason = (self.app_exit.describe() if self.app_exit.failed else
                                    "idle: the app returned; nothing is left to try")
                break
            if self.paused.is_set() or self.halted or \
                    self.clock() - started < cfg.warmup_seconds:
                continue
            if self.selection.budget_exhausted():
                if self.options.exit_when_idle:
                    assert self.selection.halt is not None
                    self.exit_reason = f"halted: {self.selection.halt.reason}"
                    break
                continue
            assert self.profiler is not None
            if self.profiler.window_samples() < cfg.min_samples:
                waiting = self._say_waiting(waiting)
                if self.options.exit_when_idle and self.profiler.total_samples == 0 and \
                        self.clock() - waiting[0] >= cfg.no_samples_seconds:
                    self.exit_reason = (f"idle: no in-scope function ran in "
                                        f"{cfg.no_samples_seconds:g} s; check --scope "
                                        "against what the app runs")
                    break
                continue
            waiting = None
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

    def _say_waiting(self, waiting: tuple[float, float] | None) -> tuple[float, float]:
        """Say every WAIT_NOTICE_SECONDS how the wait for enough in-scope samples goes."""
        now = self.clock()
        since, said = waiting if waiting is not None else (now, now)
        if now - said >= WAIT_NOTICE_SECONDS:
            assert self.profiler is not None
            samples, needed = self.profiler.window_samples(), self.config.cycle.min_samples
            self.log.info("waiting_for_samples", samples=samples, needed=needed,
                          seconds=round(now - since, 1),
                          hint="" if samples else "no in-scope function has been on a stack: "
                               "check --scope against what the app runs")
            self.liveness.status(f"waiting for samples: {samples} of {needed} in scope")
            said = now
        return since, said

    def pick(self) -> HotSpot | None:
        """The target the next cycle works on (see :meth:`daemon.selection.Selection.pick`)."""
        assert self.profiler is not None
        ranking = self.profiler.ranking(self.config.cycle.min_share)
        for spot in ranking:
            if not spot.returning and spot.running_seconds >= self.config.profiler.window_seconds \
                    and spot.target not in self._not_returning:
                self._not_returning.add(spot.target)
                self.log.info("not_a_target", target=spot.target, share=round(spot.share, 3),
                              running_seconds=round(spot.running_seconds, 1),
                              reason="no call of it has returned: a loop or a server records "
                                     "no calls to replay; the functions it calls are targets")
        return self.selection.pick(ranking)

    def current_version(self, target: str) -> str:
        installed = self.swapper.active().get(target)
        return installed.version if installed else ORIGINAL

    def run_cycle(self, spot: HotSpot) -> CycleReport:
        self.selection.started()
        version = self.current_version(spot.target)
        if self.throughput_before is None and self.workload is not None:
            stats = self.workload.stats()
            self.throughput_before = stats.throughput if stats else None
        cycle = Cycle(policy=self.policy, ledger=self.ledger, swapper=self.swapper,
                      proposers=self.proposers.for_cycle(self.config, self.policy()),
                      sandbox=self._sandbox, bus=self.bus, config=self.config.cycle,
                      corpus_root=self.snapshots.corpus_dir, stop=self.stop_event,
                      clock=self.clock, rollouts=self.rollouts)
        # every line the cycle logs names the target and the version it starts from
        with log_context(target=spot.target, version=version):
            report = cycle.run(spot)
        self.cycles.append(report)
        self.liveness.status(f"cycle {len(self.cycles)}: {report.target} → {report.outcome}")
        self.selection.finished(spot.target, version, report.outcome)
        self.last_cycle = {"target": report.target, "outcome": report.outcome,
                           "reason": report.reason, "seconds": report.seconds,
                           "finished_at": self.wall()}
        return report

    def _sandbox(self, policy: Policy) -> Sandbox:
        return make_sandbox(policy, self.isolation, self.stop_event,
                            hide=(self.config.state_dir,))

    def _rank_again(self, _target: str) -> None:
        """A new version is live: shares changed, so the profiler ranks on the new code."""
        if self.profiler is not None:
            self.profiler.reset()

    # -- what the metrics and the operator read ---------------------------------------

    def _coverage(self) -> float:
        """Verification coverage of the active versions (rollbacks and approvals change it)."""
        return coverage(record.evidence for record in self.ledger.active_versions())

    def _synthesis_halted(self) -> bool:
        return self.paused.is_set() or bool(self.halted) or self.selection.halt is not None

    def _workload_stats(self) -> WorkloadStats | None:
        return self.workload.stats() if self.workload is not None else None

    def status(self) -> StatusSnapshot:
        """A read-only snapshot of this daemon, for the control routes."""
        policy = self.policy()
        stats = self._workload_stats()
        halt = self.selection.halt
        return StatusSnapshot(
            state_dir=str(self.config.state_dir), paused=self.paused.is_set(),
            halted=self.halted, budget_halt=halt.reason if halt is not None else "",
            isolation=self.isolation.as_dict(),
            policy={"version": policy.version, "sha256": policy.sha256,
                    "path": str(self.config.policy or "<embedded>")},
            cycles=len(self.cycles), last_cycle=self.last_cycle,
            in_flight=self.in_flight.snapshot(),
            workload=asdict(stats) if stats else None, app=self._app_state(traceback=False),
            uptime_seconds=self.wall() - self.started_wall, audit=self._audit_anchoring())

    def _app_state(self, *, traceback: bool) -> dict[str, Any]:
        """The hosted app: running, or how it ended (for status and the report)."""
        if self.app_exit is None:
            return {"app": self.config.workload.app, "outcome": "running"}
        state = self.app_exit.body()
        if not traceback:
            state.pop("traceback")
        return state

    def _audit_anchoring(self) -> str:
        audit = self.snapshots.audit
        if audit.anchor is None:
            return "unanchored"
        seq = audit.checkpointed
        return f"anchored: last checkpoint at seq {seq}" if seq else "anchored: no checkpoint yet"

    # -- shutdown ---------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        if not self.exit_reason:
            self.exit_reason = reason
        self.liveness.stopping()
        self.stop_event.set()

    def shutdown(self) -> None:
        self.liveness.stopping()
        self.stop_event.set()
        self.operator.join(10.0)
        self.liveness.stop()
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
            self.cycles, started_at=self.started_wall, finished_at=self.wall(),
            exit_reason=self.exit_reason, state_dir=self.config.state_dir,
            policy={"version": policy.version, "sha256": policy.sha256},
            active={t: i.version for t, i in self.swapper.active().items()},
            throughput_before=self.throughput_before,
            stats=self.workload.stats() if self.workload is not None else None,
            app=self._app_state(traceback=True))

    def write_report(self, path: Path) -> None:
        write_report(path, self.report())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("selfmod")
    except PackageNotFoundError:
        return "unknown"


def install_signal_handlers(daemon: Daemon, reload: Callable[[], None]) -> None:
    """SIGTERM/SIGINT stop the daemon gracefully; SIGHUP reloads config and policy."""

    def stop(signum: int, _frame: Any) -> None:
        daemon.request_stop(signal.Signals(signum).name)

    def hup(_signum: int, _frame: Any) -> None:
        threading.Thread(target=reload, name="selfmod-reload", daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hup)
