"""The rollout step: put a judged version live behind its canary, or take one out.

Both ways a version goes live use it: a cycle that accepted a candidate
(:mod:`daemon.cycle`) and an operator's ``approve`` (:mod:`daemon.operator`),
and so does the operator's ``rollback``. One :class:`Rollouts` holds what a
rollout needs (the swap manager, the ledger, the bus, the policy in force) and
says what follows it through :class:`Followups`: a regression cools the target
down, a version that held up makes the profiler rank again on the new code, an
operator's rollback keeps the daemon from trying the same thing again. The
active-patch gauge needs no poke: it reads the swap manager at scrape time.
"""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from daemon import events as ev
from daemon.canary import Canary, CanaryLimits, Regressed, Rollout, is_pure, roll_back
from daemon.errors import SwapError
from daemon.ledger import Ledger
from daemon.swap import Installed, SwapManager
from envelope.policy import Policy
from invariants.targets import TargetError, sha256_text
from snapshots.versions import VersionRecord, VersionStatus


def _nothing(_target: str) -> None:
    return None


@dataclass(frozen=True)
class Followups:
    """What the rest of the daemon does after a rollout, per target; by default nothing."""

    regressed: Callable[[str], None] = _nothing  # the canary rolled the version back
    live: Callable[[str], None] = _nothing  # the version is live and held up (or was cut short)
    refused: Callable[[str], None] = _nothing  # an operator took the live version out


class Rollouts:
    """Puts versions live and takes them out, the one way the cycle and the operator share."""

    def __init__(self, swapper: SwapManager, ledger: Ledger, bus: ev.EventBus,
                 policy: Callable[[], Policy], *, stop: threading.Event,
                 clock: Callable[[], float] = time.monotonic,
                 followups: Followups | None = None) -> None:
        self._swapper = swapper
        self._ledger = ledger
        self._bus = bus
        self._policy = policy
        self._stop = stop
        self._clock = clock
        self._followups = followups or Followups()
        self._excluded: dict[str, dict[str, Any]] | None = None
        self._excluded_lock = threading.Lock()

    # -- what an operator may look at ------------------------------------------------

    def active(self) -> dict[str, Installed]:
        """The versions live now, by target."""
        return self._swapper.active()

    def find(self, version_prefix: str) -> VersionRecord:
        """The stored version whose id starts with ``version_prefix`` (raises UnknownVersion)."""
        return self._ledger.find(version_prefix)

    def awaiting_approval(self) -> dict[str, str]:
        """Versions that passed every check and wait for ``selfmod approve``: id -> target."""
        return {v.id: v.target for v in self._ledger.history()
                if v.status is VersionStatus.PROPOSED and v.evidence.get("awaiting_approval")}

    def base_sha(self, target: str) -> str | None:
        """The hash of ``target``'s original source as loaded now; None when it cannot be read."""
        try:
            return sha256_text(self._swapper.original_source(target))
        except (TargetError, SwapError):
            return None

    def busy(self, target: str) -> bool:
        """Whether a version of ``target`` is being rolled out and watched right now."""
        return self._swapper.rollout_lock(target).locked()

    def budget_exceeded(self, target: str, policy: Policy | None = None) -> int | None:
        """budgets.active_patches when a version of ``target`` going live would exceed it.

        ``policy`` is the one the version was judged under (default: the one in force).
        """
        budget = (policy or self._policy()).budgets.active_patches
        active = self._swapper.active()
        return budget if len(active) >= budget and target not in active else None

    # -- putting a version live, taking one out --------------------------------------

    def compile(self, target: str, version: str, source: str | None = None) -> types.CodeType:
        """The code object of ``version`` (its stored source unless ``source`` is given).

        Raises SwapError (or SnapshotError for a stored source that cannot be read).
        """
        text = source if source is not None else self._ledger.source(version)
        return self._swapper.compile(target, text, version)

    def roll_out(self, target: str, version: str, code: types.CodeType,
                 evidence: Mapping[str, Any], *, expect_live: str | None = None,
                 policy: Policy | None = None) -> Rollout:
        """Baseline, swap, canary and, on a regression, rollback; then the follow-ups.

        See :meth:`daemon.canary.Canary.roll_out` for ``expect_live``; ``policy`` is the
        one the version was judged under (default: the one in force). Raises
        SwapError when the code cannot be installed.
        """
        policy = policy or self._policy()
        canary = Canary(self._swapper, self._ledger, self._bus,
                        CanaryLimits.from_policy(policy.canary),
                        pure=is_pure(target, policy.invariants.pure), stop=self._stop,
                        clock=self._clock)
        rollout = canary.roll_out(target, version, code, evidence, expect_live=expect_live)
        if isinstance(rollout.verdict, Regressed):
            self._followups.regressed(target)
        elif rollout.installed is not None:
            self._followups.live(target)
        return rollout

    def roll_back(self, installed: Installed, reason: str) -> bool:
        """Take ``installed`` out at an operator's word; False when it was out already.

        Unless the policy says otherwise (approval.rollback_excludes), the target is
        then excluded: the operator's "no" holds across restarts until ``include``.
        """
        if not roll_back(self._swapper, self._ledger, self._bus, installed, reason):
            return False
        self._followups.refused(installed.target)
        if self._policy().approval.rollback_excludes:
            self.exclude(installed.target, "rollback",
                         f"rolled back {installed.version[:12]} by hand")
        return True

    # -- what synthesis may not try ----------------------------------------------------

    def excluded(self) -> dict[str, dict[str, Any]]:
        """The targets kept out of synthesis (read from the state once, then kept here)."""
        with self._excluded_lock:
            if self._excluded is None:
                self._excluded = self._ledger.excluded()
            return dict(self._excluded)

    def exclude(self, target: str, by: str, note: str = "") -> bool:
        """Keep ``target`` out of synthesis, on the record; False when it was out already."""
        with self._excluded_lock:
            changed = self._ledger.exclude(target, by, note)
            self._excluded = self._ledger.excluded()
        if changed:
            self._bus.publish(ev.TargetExcluded(target, by, note))
        return changed

    def include(self, target: str) -> bool:
        """Let synthesis try ``target`` again, on the record; False when it was not out."""
        with self._excluded_lock:
            changed = self._ledger.include(target)
            self._excluded = self._ledger.excluded()
        if changed:
            self._bus.publish(ev.TargetIncluded(target))
        return changed
