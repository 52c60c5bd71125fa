"""Which hot target the next cycle works on: scope, cool-downs, what was tried, the budget.

The main loop (:mod:`daemon.lifecycle`) asks :meth:`Selection.pick` for a target
from the profiler's ranking, records each cycle with :meth:`Selection.started`
and :meth:`Selection.finished`, and asks :meth:`Selection.budget_exhausted`
before each one. The decisions themselves are the pure functions of
:mod:`daemon.budget`; this class keeps the state they look at.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from daemon.budget import CycleWindow, Halt, cooldown_until, cooling_down
from daemon.events import CycleOutcome
from daemon.profiler import HotSpot
from envelope.policy import Policy
from invariants.targets import in_scope as _glob_in_scope

ORIGINAL = "original"  # the version name of a target's own code, when none is active


class Selection:
    """Target selection and the synthesis budget of one daemon."""

    def __init__(self, *, policy: Callable[[], Policy], current_version: Callable[[str], str],
                 log: Any, scope: tuple[str, ...] = (), app: str | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 excluded: Callable[[], Collection[str]] = tuple) -> None:
        self._policy = policy
        self._excluded = excluded  # targets an operator keeps out (selfmod exclude)
        self._current_version = current_version
        self._log = log
        self._scope = scope  # overrides the policy's include globs when given
        self._app_scope = app_scope(app)
        self._clock = clock
        self.tried: dict[tuple[str, str], str] = {}  # (target, version) -> outcome
        self.cooldown: dict[str, float] = {}  # target -> when it may be picked again
        self.window = CycleWindow()  # cycle start times, for budgets.cycles_per_hour
        self.halt: Halt | None = None  # set while that budget is exhausted

    def in_scope(self, target: str) -> bool:
        """Whether synthesis may work on ``target`` (``--scope``, else the policy's scope)."""
        if self._scope:
            return _glob_in_scope(target, self._scope, self._policy().scope.exclude)
        return self._policy().in_scope(target, self._app_scope)

    def pick(self, ranking: Iterable[HotSpot]) -> HotSpot | None:
        """The hottest in-scope target seen returning, not excluded by an operator, not yet
        tried at its current version, not cooling down."""
        now = self._clock()
        excluded = self._excluded()
        for spot in ranking:
            if not self.in_scope(spot.target) or not spot.returning:
                continue  # a call that never returns (a loop, a server) records nothing
            if spot.target in excluded:
                continue
            if cooling_down(self.cooldown.get(spot.target), now):
                continue
            if (spot.target, self._current_version(spot.target)) in self.tried:
                continue
            return spot
        return None

    def budget_exhausted(self) -> bool:
        """Whether budgets.cycles_per_hour forbids a cycle now; logs each change."""
        halt = self.window.halt(self._clock(), self._policy().budgets.cycles_per_hour)
        if halt is not None and self.halt is None:
            self._log.warning("synthesis_halted", reason=halt.reason)
        elif halt is None and self.halt is not None:
            self._log.info("synthesis_resumed", reason="budgets.cycles_per_hour allows a cycle")
        self.halt = halt
        return halt is not None

    def started(self) -> None:
        """Count a cycle starting now against budgets.cycles_per_hour."""
        self.window.record(self._clock())

    def finished(self, target: str, version: str, outcome: str) -> None:
        """Remember what a cycle on ``target`` from ``version`` ended with."""
        # a canary rollback leaves the target to be tried again once it has cooled down
        if outcome not in (CycleOutcome.ABORTED, CycleOutcome.ROLLED_BACK):
            self.tried[(target, version)] = outcome
        if outcome in (CycleOutcome.REJECTED, CycleOutcome.ROLLED_BACK):
            self.cool_down(target)

    def cool_down(self, target: str) -> None:
        """Keep ``target`` from being picked for budgets.cooldown_seconds from now."""
        self.cooldown[target] = cooldown_until(self._clock(),
                                               self._policy().budgets.cooldown_seconds)

    def refused(self, target: str) -> None:
        """An operator rolled a version of ``target`` back: don't try again from the code now
        live (the version it replaced), which is what it was made from."""
        self.tried[(target, self._current_version(target))] = CycleOutcome.ROLLED_BACK

    def forget_rejections(self) -> None:
        """A new policy may accept what the old one rejected: try those targets again."""
        self.tried = {k: v for k, v in self.tried.items() if v != CycleOutcome.REJECTED}
        self.cooldown.clear()


def app_scope(app: str | None) -> tuple[str, ...]:
    """The default scope for a hosted app: its own top-level package, nothing else."""
    if not app:
        return ()
    package = app.partition(":")[0].split(".")[0]
    return (f"{package}:*", f"{package}.*:*")
