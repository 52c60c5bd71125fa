"""The canary: watch a freshly swapped version on live calls, and roll it back on regression.

Three measurements, all taken by probes (:mod:`daemon.probe`) in the callers'
threads and judged in the daemon's cycle thread:

- **latency** — the median wall time of a call, on the new code, against a
  *baseline* window taken on the previous code just before the swap;
- **errors** — the share of calls that raise, against the baseline's share;
- **outcomes** — for targets the policy marks pure, a sample of live calls is
  run a second time on the previous code and the two outcomes are compared
  with :func:`invariants.compare.compare_outcomes`, the way GitHub's Scientist
  runs a control next to a candidate. The live caller always gets the new
  code's result or exception, untouched; the control runs after the live call
  (so it cannot change the arguments the live call saw) and nothing it does,
  raising included, reaches the caller.

:func:`verdict` and :func:`early_verdict` are the decision, plain functions over
:class:`Window` values, in :mod:`daemon.canary_verdict`. :class:`Canary` runs
the windows and, on a regression, :func:`roll_back` takes the version out: the
state first, then the code, then the ``rolled_back`` event (which the audit log
and the metrics subscribe to), so a crash in between can never bring a version
the canary refused back on restart.

Per call, a probe does two clock reads and a list append; a compared call
also runs the previous code once more, in the caller's thread (that is the
price ``compare_sample`` sets). A recursive target's inner calls are not
measured: they run the live code directly, and a control's inner calls
therefore run the new code too.
"""

from __future__ import annotations

import collections.abc
import fnmatch
import random
import threading
import time
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from daemon import events as ev
from daemon.canary_verdict import (
    ERRORS,
    LATENCY,
    MISMATCH,
    CanaryLimits,
    Mismatch,
    Passed,
    Regressed,
    Verdict,
    Window,
    early_verdict,
    verdict,
)
from daemon.errors import SwapError
from daemon.ledger import Ledger
from daemon.swap import Installed, SwapManager
from invariants.compare import RAISE, RETURN, Outcome, compare_outcomes, exception_message
from invariants.compare import exception_name as _exception_name
from invariants.render import safe_repr
from invariants.targets import make_function
from snapshots.crash import crash_point

# the decision's names, for those who run a canary and read its verdict
__all__ = ["ERRORS", "LATENCY", "MISMATCH", "Canary", "CanaryLimits", "Mismatch", "Passed",
           "Regressed", "Rollout", "Verdict", "Watch", "Window", "early_verdict", "is_pure",
           "roll_back", "verdict"]

_POLL_SECONDS = 0.02  # how often the cycle thread looks at a window in progress
_EVIDENCE_CHARS = 300


def is_pure(target: str, pure_globs: Iterable[str]) -> bool:
    """Whether the policy's ``invariants.pure`` globs mark ``target`` as pure."""
    return any(fnmatch.fnmatchcase(target, glob) for glob in pure_globs)


# -- the probe --------------------------------------------------------------------------


class Watch:
    """A probe handler collecting one window of live calls (callable from any thread).

    Counters are lists that only grow by ``append``, which is atomic under the
    GIL, so the callers' threads never take a lock; the window is full once
    ``calls`` calls are in, and from then on the handler only passes calls through.
    """

    def __init__(self, calls: int, *, control: Callable[..., Any] | None = None,
                 sample: float = 0.0, rng: random.Random | None = None,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        self.limit = calls
        self.done = threading.Event()
        self._control = control
        self._sample = sample if control is not None else 0.0
        self._random = (rng or random.Random()).random
        self._timer = timer
        self._latencies: list[float] = []
        self._errors: list[int] = []
        self._compared: list[int] = []
        self._mismatches: list[Mismatch] = []
        self._local = threading.local()

    def __call__(self, inner: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> Any:
        if self.done.is_set() or getattr(self._local, "busy", False):
            return inner(*args, **kwargs)
        self._local.busy = True
        try:
            started = self._timer()
            try:
                result = inner(*args, **kwargs)
            except Exception as exc:
                self._count(self._timer() - started, error=True)
                if self._sample and self._random() < self._sample:
                    self._compare(args, kwargs, None, exc)
                raise
            self._count(self._timer() - started, error=False)
            if self._sample and self._random() < self._sample:
                self._compare(args, kwargs, result, None)
            return result
        finally:
            self._local.busy = False

    def _count(self, seconds: float, *, error: bool) -> None:
        self._latencies.append(seconds)
        if error:
            self._errors.append(1)
        if len(self._latencies) >= self.limit:
            self.done.set()

    def _compare(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any,
                 raised: BaseException | None) -> None:
        """Run the control and record a mismatch; never raises into the caller."""
        assert self._control is not None
        try:
            if raised is not None:
                new = _raised(raised)
            elif isinstance(result, collections.abc.Iterator):
                return  # it would have to be consumed to compare it, and it is the caller's
            else:
                new = Outcome(RETURN, result)
            try:
                previous = Outcome(RETURN, self._control(*args, **kwargs))
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit from the previous code is an outcome too
                previous = _raised(exc)
            difference = compare_outcomes(previous, new, repr_limit=_EVIDENCE_CHARS)
            self._compared.append(1)
            if difference is None or difference.kind == "uncomparable":
                return
            call = safe_repr((args, kwargs), _EVIDENCE_CHARS)
            self._mismatches.append(Mismatch(call, difference.kind, difference.expected,
                                             difference.actual))
            self.done.set()  # one mismatch is the whole verdict
        except KeyboardInterrupt:
            raise
        except BaseException:  # a failed comparison is no evidence either way
            return

    def calls(self) -> int:
        return len(self._latencies)

    def window(self, seconds: float) -> Window:
        """The evidence so far (safe to call while calls are still arriving)."""
        latencies = tuple(self._latencies)
        return Window(calls=len(latencies), errors=len(self._errors), latencies=latencies,
                      compared=len(self._compared), mismatches=tuple(self._mismatches),
                      seconds=seconds)


def _raised(exc: BaseException) -> Outcome:
    return Outcome(RAISE, exc_type=_exception_name(type(exc)), exc_message=exception_message(exc))


# -- running a canary ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rollout:
    """What :meth:`Canary.roll_out` did: installed and judged, or not installed and why."""

    installed: Installed | None
    verdict: Verdict | None
    refused: str = ""


def _name(version: str) -> str:
    return f"version {version[:12]}" if version else "the original code"


class Canary:
    """Takes the baseline before a swap, watches the new version after it, and enforces."""

    def __init__(self, swapper: SwapManager, ledger: Ledger, bus: ev.EventBus,
                 limits: CanaryLimits, *, pure: bool, stop: threading.Event,
                 clock: Callable[[], float] = time.monotonic,
                 timer: Callable[[], float] = time.perf_counter,
                 rng: random.Random | None = None) -> None:
        self._swapper = swapper
        self._ledger = ledger
        self._bus = bus
        self.limits = limits
        self._pure = pure
        self._stop = stop
        self._clock = clock
        self._timer = timer
        self._rng = rng or random.Random()

    def roll_out(self, target: str, version: str, code: types.CodeType,
                 evidence: Mapping[str, Any], *, expect_live: str | None = None) -> Rollout:
        """Put ``version`` live on ``target`` and watch it: baseline, install, record, judge.

        Holds the target's rollout lock throughout. ``expect_live`` is the
        version ("" for the original code) the candidate was made from: if
        something else is live by the time the baseline is taken (an operator
        rolled back or approved meanwhile), the version is not installed.
        Raises SwapError when the code cannot be installed.
        """
        with self._swapper.rollout_lock(target):
            self._bus.publish(ev.RolloutStarted(target, version))
            baseline = self.baseline(target)
            if self._stop.is_set():  # no version goes live without its canary
                return Rollout(None, None, "the daemon is stopping")
            live = self._swapper.active().get(target)
            live_version = live.version if live is not None else ""
            if expect_live is not None and live_version != expect_live:
                return Rollout(None, None, f"the live code of {target} changed while the "
                                           f"version was judged: it was made from "
                                           f"{_name(expect_live)}, {_name(live_version)} "
                                           "is live now")
            crash_point("swap.before_install")
            installed = self._swapper.install(target, version, code)
            installed_at = self._clock()
            crash_point("swap.after_install_before_state")
            self._ledger.activate(target, version, evidence)
            crash_point("swap.after_state")
            self._bus.publish(ev.VersionSwapped(target, version, installed.previous_version,
                                                installed.pause_seconds))
            return Rollout(installed, self.judge(installed, baseline, installed_at))

    def baseline(self, target: str) -> Window:
        """A short window on the code now live, which the next install will replace."""
        watch = Watch(self.limits.calls, timer=self._timer)
        return self._collect(target, watch, self.limits.baseline_seconds, None,
                             stretch=(self.limits.min_latency_calls, self.limits.seconds))

    def judge(self, installed: Installed, baseline: Window, installed_at: float) -> Verdict:
        """Watch ``installed`` for the policy's window; roll it back on a regression.

        ``installed_at`` is the clock reading taken right after the install, from
        which the detect-to-rollback time is measured.
        """
        target = installed.target
        control = None
        if self._pure and self.limits.compare_sample > 0:
            control = make_function(installed.previous_code, self._swapper.function(target))
        watch = Watch(self.limits.calls, control=control, sample=self.limits.compare_sample,
                      rng=self._rng, timer=self._timer)
        window = self._collect(target, watch, self.limits.seconds, baseline)
        result = verdict(baseline, window, self.limits)
        if isinstance(result, Regressed):
            roll_back(self._swapper, self._ledger, self._bus, installed, result.reason,
                      result.detail, since=installed_at, clock=self._clock)
            return result
        if self._still_in_force(installed):
            note = result.note
            if self._stop.is_set():
                note = "; ".join(filter(None, ["cut short: the daemon is stopping", note]))
            self._bus.publish(ev.CanaryPassed(target, installed.version, window.calls,
                                              window.compared, result.latency_ratio,
                                              result.error_rate_increase, window.seconds, note))
        return result

    def _collect(self, target: str, watch: Watch, seconds: float, baseline: Window | None,
                 stretch: tuple[int, float] | None = None) -> Window:
        """Probe ``target`` until the window is full, ``seconds`` pass, or the daemon stops.

        ``stretch`` is (calls, longest seconds): past ``seconds``, go on until that
        many calls are in or the longer time is up. With a ``baseline``, a
        regression the rest of the window could not undo ends it at once.
        """
        wanted, longest = stretch or (0, seconds)
        longest = max(longest, seconds)
        started = self._clock()
        try:
            probe = self._swapper.probe(target, watch)
            probe.install()
        except SwapError:  # the code changed under us (an operator's rollback): no evidence
            return Window()
        try:
            while not watch.done.is_set() and not self._stop.is_set():
                elapsed = self._clock() - started
                if elapsed >= longest or (elapsed >= seconds and watch.calls() >= wanted):
                    break
                watch.done.wait(_POLL_SECONDS)
                if baseline is not None and early_verdict(
                        baseline, watch.window(self._clock() - started), self.limits):
                    break
        finally:
            watch.done.set()
            probe.remove()
        return watch.window(self._clock() - started)

    def _still_in_force(self, installed: Installed) -> bool:
        current = self._swapper.active().get(installed.target)
        return current is not None and current.version == installed.version


def roll_back(swapper: SwapManager, ledger: Ledger, bus: ev.EventBus, installed: Installed,
              reason: str, detail: str = "", *, since: float | None = None,
              clock: Callable[[], float] = time.monotonic) -> bool:
    """Take ``installed`` out of the live process; False when it was no longer in force.

    The live code falls back to what ``installed`` replaced: the previous
    version, which becomes active again, or the original code. The state is
    written first, then the code is restored, then the event is published: a
    crash after the first step leaves the version marked rolled back and the
    previous one active, so a restart does not re-apply the refused version.
    ``since`` (a ``clock`` reading at install time) gives the event its
    detect-to-rollback seconds.
    """
    target = installed.target
    current = swapper.active().get(target)
    if current is None or current.version != installed.version:
        return False
    ledger.roll_back(target, installed.version, reason, reinstate=installed.previous_version)
    crash_point("rollback.after_state")
    try:
        swapper.rollback(target, installed.version)
    except SwapError:  # a concurrent rollback got there first and publishes its own event
        return False
    detect = clock() - since if since is not None else 0.0
    crash_point("rollback.after_uninstall")
    bus.publish(ev.VersionRolledBack(target, installed.version, reason, detail, detect,
                                     restored=installed.previous_version))
    return True
