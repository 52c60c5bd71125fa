"""What an operator can ask of a running daemon: the control socket's routes.

``status``, ``pause`` and ``resume`` read or flip the daemon's state;
``rollback`` takes a live version out at once; ``approve`` puts a version that
waits for approval live the way a cycle would, in a thread of its own, and
answers at once. Both go through :class:`daemon.rollout.Rollouts`, the same
step a cycle uses. Every answer is ``(HTTP status, JSON-able body)``; errors an operator
can cause are 4xx with a sentence saying what to do.
"""

from __future__ import annotations

import os
import threading
import types
from collections.abc import Callable
from typing import Any

from daemon.errors import SwapError
from daemon.rollout import Rollouts
from daemon.status import StatusSnapshot
from snapshots.errors import SnapshotError, UnknownVersion
from snapshots.versions import VersionStatus

Answer = tuple[int, dict[str, Any]]

_ID_BODY = 'body must be {"id": "<version id or prefix>"}'
_TARGET_BODY = 'body must be {"target": "<module:qualname>"} (and optionally "note": "<why>")'
MIN_PREFIX = 4  # as on the offline path (Ledger.find): a shorter prefix is a guess


class Operator:
    """The control routes of one daemon, and the approvals they started.

    It sees the daemon through three narrow things: the ``paused`` flag it flips,
    a ``status`` snapshot it reads, and the :class:`~daemon.rollout.Rollouts` that
    put versions live and take them out; ``in_scope`` is the policy's scope and
    ``log`` the daemon's logger.
    """

    def __init__(self, *, paused: threading.Event, status: Callable[[], StatusSnapshot],
                 rollouts: Rollouts, in_scope: Callable[[str], bool], log: Any) -> None:
        self._paused = paused
        self._status = status
        self._rollouts = rollouts
        self._in_scope = in_scope
        self._log = log
        # versions approved and being rolled out: id -> (target, thread)
        self._approving: dict[str, tuple[str, threading.Thread]] = {}

    def routes(self) -> dict[tuple[str, str], Any]:
        """The routes for :class:`daemon.control.ControlServer`."""
        paused = self._paused

        def pause(_: dict[str, Any]) -> Answer:
            paused.set()
            return 200, {"paused": True}

        def resume(_: dict[str, Any]) -> Answer:
            paused.clear()
            return 200, {"paused": False}

        def by_id(action: Callable[[str], Answer]) -> Callable[[dict[str, Any]], Answer]:
            def route(body: dict[str, Any]) -> Answer:
                version = body.get("id")
                if not isinstance(version, str) or not version:
                    return 400, {"error": _ID_BODY}
                if len(version) < MIN_PREFIX:
                    return 400, {"error": f"version id {version!r} is too short: give at "
                                          f"least {MIN_PREFIX} characters"}
                return action(version)
            return route

        return {("GET", "/status"): lambda _: (200, self.status()),
                ("POST", "/pause"): pause, ("POST", "/resume"): resume,
                ("POST", "/rollback"): by_id(lambda v: self.rollback(v, reason="operator")),
                ("POST", "/approve"): by_id(self.approve),
                ("POST", "/exclude"): self.exclude, ("POST", "/include"): self.include}

    def status(self) -> dict[str, Any]:
        """What `selfmod status` shows of a running daemon."""
        snapshot = self._status()
        approving = dict(self._approving)
        return {
            "running": True,
            "pid": os.getpid(),
            "state_dir": snapshot.state_dir,
            "paused": snapshot.paused,
            "halted": snapshot.halted,
            "budget_halt": snapshot.budget_halt,
            "isolation": snapshot.isolation,
            "policy": snapshot.policy,
            "active": {t: i.version for t, i in self._rollouts.active().items()},
            "excluded": self._rollouts.excluded(),
            "awaiting_approval": {vid: target for vid, target
                                  in self._rollouts.awaiting_approval().items()
                                  if vid not in approving},
            "approving": {vid: target for vid, (target, _) in approving.items()},
            "cycles": snapshot.cycles,
            "last_cycle": snapshot.last_cycle,
            "in_flight": snapshot.in_flight,
            "workload": snapshot.workload,
            "app": snapshot.app,
            "uptime_seconds": snapshot.uptime_seconds,
            "audit": snapshot.audit,
        }

    def approve(self, version_prefix: str) -> Answer:
        """Start rolling out a version that passed every check and waits for approval."""
        rollouts = self._rollouts
        try:
            record = rollouts.find(version_prefix)
        except UnknownVersion as exc:
            return 404, {"error": str(exc)}
        vid, target = record.id, record.target
        if record.status is not VersionStatus.PROPOSED or \
                not record.evidence.get("awaiting_approval"):
            return 409, {"error": f"version {vid[:12]} is {record.status}, not awaiting "
                                  "approval; see `selfmod history`"}
        if not self._in_scope(target):
            return 409, {"error": f"{target} is no longer in the policy's scope; "
                                  f"version {vid[:12]} was not installed"}
        if rollouts.base_sha(target) != record.base_sha:
            return 409, {"error": f"the code of {target} changed since version {vid[:12]} was "
                                  "judged; it was not installed"}
        budget = rollouts.budget_exceeded(target)
        if budget is not None:
            return 409, {"error": f"{budget} patches are already active (budgets.active_patches"
                                  "); roll one back or raise the budget"}
        if rollouts.busy(target) or vid in self._approving:
            return 409, {"error": f"a version of {target} is being rolled out and watched "
                                  "right now; try again once its canary is done"}
        try:
            code = rollouts.compile(target, vid)
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
        try:
            self._rollouts.roll_out(target, vid, code, {"approved": "operator"})
        except Exception as exc:  # a failed approval must not take the daemon down
            self._log.error("approval_failed", target=target, version=vid,
                            error=f"{type(exc).__name__}: {exc}")
        finally:
            self._approving.pop(vid, None)

    def rollback(self, version_prefix: str, reason: str) -> Answer:
        """Take the live version ``version_prefix`` out; what it replaced is live again."""
        matches = [(t, i) for t, i in self._rollouts.active().items()
                   if version_prefix and i.version.startswith(version_prefix)]
        if not matches:
            return 404, {"error": f"no active version starts with {version_prefix!r}; "
                                  "see `selfmod status`"}
        if len(matches) > 1:
            return 409, {"error": f"{version_prefix!r} is ambiguous; give more characters"}
        target, installed = matches[0]
        # on success the operator said no to this version: the rollouts' follow-up keeps
        # the daemon from trying again from the code now live, which it was made from
        if not self._rollouts.roll_back(installed, reason):
            return 409, {"error": f"version {installed.version[:12]} was rolled back meanwhile"}
        return 200, {"rolled_back": installed.version, "target": target,
                     "restored": installed.previous_version,
                     "excluded": target in self._rollouts.excluded()}

    def exclude(self, body: dict[str, Any]) -> Answer:
        """Keep a target out of synthesis until it is included again (kept in state.json)."""
        target, note = body.get("target"), body.get("note", "")
        if not isinstance(target, str) or ":" not in target or not isinstance(note, str):
            return 400, {"error": _TARGET_BODY}
        self._rollouts.exclude(target, "operator", note[:500])
        return 200, {"excluded": target, "by": "operator",
                     "active": target in self._rollouts.active()}

    def include(self, body: dict[str, Any]) -> Answer:
        """Let synthesis try an excluded target again."""
        target = body.get("target")
        if not isinstance(target, str) or ":" not in target:
            return 400, {"error": _TARGET_BODY}
        if not self._rollouts.include(target):
            return 404, {"error": f"{target} is not excluded; `selfmod status` lists what is"}
        return 200, {"included": target}

    def join(self, timeout: float) -> None:
        """Wait for the approvals in flight (the daemon's stop ends their canaries)."""
        for _, thread in list(self._approving.values()):
            thread.join(timeout)
