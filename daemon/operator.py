"""What an operator can ask of a running daemon: the control socket's routes.

``status``, ``pause`` and ``resume`` read or flip the daemon's state;
``rollback`` takes a live version out at once (:func:`daemon.canary.roll_back`);
``approve`` puts a version that waits for approval live the way a cycle would,
in a thread of its own (:meth:`daemon.canary.Canary.roll_out`), and answers
at once. Every answer is ``(HTTP status, JSON-able body)``; errors an operator
can cause are 4xx with a sentence saying what to do.
"""

from __future__ import annotations

import os
import threading
import types
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from daemon.budget import cooldown_until
from daemon.canary import Canary, CanaryLimits, Regressed, is_pure, roll_back
from daemon.errors import SwapError
from snapshots.errors import SnapshotError, UnknownVersion
from snapshots.versions import VersionStatus

if TYPE_CHECKING:
    from daemon.lifecycle import Daemon

Answer = tuple[int, dict[str, Any]]

_ID_BODY = 'body must be {"id": "<version id or prefix>"}'


class Operator:
    """The control routes of one daemon, and the approvals they started."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        # versions approved and being rolled out: id -> (target, thread)
        self._approving: dict[str, tuple[str, threading.Thread]] = {}

    def routes(self) -> dict[tuple[str, str], Any]:
        """The routes for :class:`daemon.control.ControlServer`."""
        daemon = self._daemon

        def pause(_: dict[str, Any]) -> Answer:
            daemon.paused.set()
            return 200, {"paused": True}

        def resume(_: dict[str, Any]) -> Answer:
            daemon.paused.clear()
            return 200, {"paused": False}

        def by_id(action: Callable[[str], Answer]) -> Callable[[dict[str, Any]], Answer]:
            def route(body: dict[str, Any]) -> Answer:
                version = body.get("id")
                if not isinstance(version, str) or not version:
                    return 400, {"error": _ID_BODY}
                return action(version)
            return route

        return {("GET", "/status"): lambda _: (200, self.status()),
                ("POST", "/pause"): pause, ("POST", "/resume"): resume,
                ("POST", "/rollback"): by_id(lambda v: self.rollback(v, reason="operator")),
                ("POST", "/approve"): by_id(self.approve)}

    def status(self) -> dict[str, Any]:
        """What `selfmod status` shows of a running daemon."""
        daemon = self._daemon
        policy = daemon.policy()
        stats = daemon.workload.stats() if daemon.workload is not None else None
        approving = dict(self._approving)
        return {
            "running": True,
            "pid": os.getpid(),
            "state_dir": str(daemon.config.state_dir),
            "paused": daemon.paused.is_set(),
            "halted": daemon.halted,
            "budget_halt": daemon.budget_halt.reason if daemon.budget_halt is not None else "",
            "isolation": daemon.isolation.as_dict(),
            "policy": {"version": policy.version, "sha256": policy.sha256,
                       "path": str(daemon.config.policy or "<embedded>")},
            "active": {t: i.version for t, i in daemon.swapper.active().items()},
            "awaiting_approval": {v.id: v.target for v in daemon.ledger.history()
                                  if v.status is VersionStatus.PROPOSED
                                  and v.evidence.get("awaiting_approval")
                                  and v.id not in approving},
            "approving": {vid: target for vid, (target, _) in approving.items()},
            "cycles": len(daemon.progress.cycles),
            "last_cycle": daemon.progress.last_cycle,
            "workload": asdict(stats) if stats else None,
            "uptime_seconds": daemon.wall() - daemon.started_wall,
        }

    def approve(self, version_prefix: str) -> Answer:
        """Start rolling out a version that passed every check and waits for approval."""
        daemon = self._daemon
        try:
            record = daemon.ledger.find(version_prefix)
        except UnknownVersion as exc:
            return 404, {"error": str(exc)}
        vid, target = record.id, record.target
        if record.status is not VersionStatus.PROPOSED or \
                not record.evidence.get("awaiting_approval"):
            return 409, {"error": f"version {vid[:12]} is {record.status}, not awaiting "
                                  "approval; see `selfmod history`"}
        if not daemon.in_scope(target):
            return 409, {"error": f"{target} is no longer in the policy's scope; "
                                  f"version {vid[:12]} was not installed"}
        if daemon.current_base_sha(target) != record.base_sha:
            return 409, {"error": f"the code of {target} changed since version {vid[:12]} was "
                                  "judged; it was not installed"}
        active = daemon.swapper.active()
        budget = daemon.policy().budgets.active_patches
        if len(active) >= budget and target not in active:
            return 409, {"error": f"{budget} patches are already active (budgets.active_patches"
                                  "); roll one back or raise the budget"}
        if daemon.swapper.rollout_lock(target).locked() or vid in self._approving:
            return 409, {"error": f"a version of {target} is being rolled out and watched "
                                  "right now; try again once its canary is done"}
        try:
            code = daemon.swapper.compile(target, daemon.ledger.source(vid), vid)
        except (SwapError, SnapshotError) as exc:
            return 409, {"error": str(exc)}
        thread = threading.Thread(target=self._roll_out, args=(target, vid, code),
                                  name="selfmod-approve", daemon=True)
        self._approving[vid] = (target, thread)
        thread.start()
        return 202, {"approved": vid, "target": target,
                     "next": "a short baseline on the live code, then the swap, watched by "
                             "the canary; `selfmod status` shows it active once swapped"}

    def _roll_out(self, target: str, vid: str, code: types.CodeType) -> None:
        """An approved version goes live like a cycle's: baseline, swap, canary, rollback."""
        daemon = self._daemon
        policy = daemon.policy()
        canary = Canary(daemon.swapper, daemon.ledger, daemon.bus,
                        CanaryLimits.from_policy(policy.canary),
                        pure=is_pure(target, policy.invariants.pure), stop=daemon.stop_event,
                        clock=daemon.clock)
        try:
            rollout = canary.roll_out(target, vid, code, {"approved": "operator"})
        except Exception as exc:  # a failed approval must not take the daemon down
            daemon.log.error("approval_failed", target=target, version=vid,
                             error=f"{type(exc).__name__}: {exc}")
            return
        finally:
            self._approving.pop(vid, None)
            daemon.metrics.active_patches.set(len(daemon.swapper.active()))
        if isinstance(rollout.verdict, Regressed):
            daemon.progress.cooldown[target] = cooldown_until(
                daemon.clock(), policy.budgets.cooldown_seconds)
        elif rollout.installed is not None and daemon.profiler is not None:
            daemon.profiler.reset()  # shares changed: rank again on the new code

    def rollback(self, version_prefix: str, reason: str) -> Answer:
        """Take the live version ``version_prefix`` out; what it replaced is live again."""
        daemon = self._daemon
        matches = [(t, i) for t, i in daemon.swapper.active().items()
                   if version_prefix and i.version.startswith(version_prefix)]
        if not matches:
            return 404, {"error": f"no active version starts with {version_prefix!r}; "
                                  "see `selfmod status`"}
        if len(matches) > 1:
            return 409, {"error": f"{version_prefix!r} is ambiguous; give more characters"}
        target, installed = matches[0]
        if not roll_back(daemon.swapper, daemon.ledger, daemon.bus, installed, reason):
            return 409, {"error": f"version {installed.version[:12]} was rolled back meanwhile"}
        daemon.metrics.active_patches.set(len(daemon.swapper.active()))
        # the operator said no to this version: don't try again from the code now live
        # (the version it replaced), which is what it was made from
        daemon.progress.tried[(target, daemon.current_version(target))] = "rolled_back"
        return 200, {"rolled_back": installed.version, "target": target,
                     "restored": installed.previous_version}

    def join(self, timeout: float) -> None:
        """Wait for the approvals in flight (the daemon's stop ends their canaries)."""
        for _, thread in list(self._approving.values()):
            thread.join(timeout)
