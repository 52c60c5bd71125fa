"""A sampling profiler: a thread that reads every other thread's current frame stack.

At ``hz`` samples per second it takes ``sys._current_frames()`` and, for each
thread, attributes one sample to the innermost frame whose function is in scope
(its "self" share: the code selfmod could change to make that sample go away).
Samples live in a sliding window, so the ranking follows the workload as it
changes and as swapped versions get faster.

The profiler also watches calls return. It keeps each in-scope frame it saw on
a stack until a sample no longer finds it there: that call has returned (or its
thread ended). A target none of whose calls has been seen returning is not
ranked as ``returning``: an app's endless ``main`` loop or a server's
``serve_forever`` can hold most of the samples, but a cycle on it would wait
out the recording for calls that never come (:meth:`Profiler.ranking` says how
long its oldest call has been running).

The cost is one GIL acquisition and a short stack walk per thread per sample;
``bench/`` measures it against the demo's throughput.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass

from envelope.threads import StoppableThread

_MAX_DEPTH = 64


def _since(held: dict[int, tuple[types.FrameType, str, float]], frame: types.FrameType,
           now: float) -> float:
    """When ``frame`` was first seen: the time held for it if it is the very frame held
    from the last sample, else ``now``."""
    entry = held.get(id(frame))
    return entry[2] if entry is not None and entry[0] is frame else now


@dataclass(frozen=True)
class HotSpot:
    """A target and its share of the in-scope samples in the current window.

    ``returning`` says whether a call of it has been seen returning, and
    ``running_seconds`` how long its oldest call still on a stack has been there.
    The share of a returning target is of the samples of returning targets only:
    a loop that never returns takes none of it.
    """

    target: str
    share: float
    samples: int
    returning: bool = True
    running_seconds: float = 0.0


class Profiler(StoppableThread):
    """Samples all threads at ``hz`` and ranks in-scope functions by self samples."""

    def __init__(self, in_scope: Callable[[str], bool], *, hz: float = 50.0,
                 window_seconds: float = 20.0, clock: Callable[[], float] = time.monotonic,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        super().__init__("selfmod-profiler", 1.0 / hz, on_error)
        self._in_scope = in_scope
        self._clock = clock
        self._window = window_seconds
        self._samples: collections.deque[tuple[float, str]] = collections.deque(
            maxlen=max(1, int(hz * window_seconds * 8)))
        self._names: dict[types.CodeType, str] = {}
        self._scope_cache: dict[str, bool] = {}
        self._lock = threading.Lock()
        self.total_samples = 0
        # per thread, the in-scope frames on its stack at the last sample: id -> (frame,
        # target, first seen); a frame held here stays alive until the next sample, so
        # a new call cannot reuse its id unnoticed
        self._live: dict[int, dict[int, tuple[types.FrameType, str, float]]] = {}
        self._returned: collections.Counter[str] = collections.Counter()

    def set_scope(self, in_scope: Callable[[str], bool]) -> None:
        """Use a new scope predicate (after a policy reload); cached verdicts are dropped."""
        self._in_scope = in_scope
        self._scope_cache = {}

    def step(self) -> None:
        self.sample(sys._current_frames(), skip=threading.get_ident())

    def sample(self, frames: dict[int, types.FrameType], skip: int | None = None) -> None:
        """Attribute one sample per thread in ``frames`` (public so tests can feed frames)."""
        now = self._clock()
        found: list[str] = []
        returned: list[str] = []
        live: dict[int, dict[int, tuple[types.FrameType, str, float]]] = {}
        for ident, frame in frames.items():
            if ident == skip:
                continue
            stack = self._in_scope_stack(frame)
            if stack:
                found.append(stack[0][1])
            held = self._live.get(ident, {})
            live[ident] = {id(f): (f, name, _since(held, f, now)) for f, name in stack}
        for ident, held in self._live.items():
            now_live = live.get(ident, {})
            returned += [name for key, (f, name, _) in held.items()
                         if key not in now_live or now_live[key][0] is not f]
        with self._lock:
            for target in found:
                self._samples.append((now, target))
            self.total_samples += len(found)
            self._returned.update(returned)
            self._live = live

    def _in_scope_stack(self, frame: types.FrameType | None) -> list[tuple[types.FrameType, str]]:
        """The in-scope frames of a stack with their targets, innermost first."""
        out: list[tuple[types.FrameType, str]] = []
        depth = 0
        while frame is not None and depth < _MAX_DEPTH:
            code = frame.f_code
            name = self._names.get(code)
            if name is None:
                if len(self._names) > 50_000:  # code created at run time (exec) must not grow this
                    self._names.clear()
                module = frame.f_globals.get("__name__", "?")
                name = self._names[code] = f"{module}:{code.co_qualname}"
            verdict = self._scope_cache.get(name)
            if verdict is None:
                # lambdas and comprehensions count towards the function that contains them
                verdict = self._scope_cache[name] = "<" not in name and self._in_scope(name)
            if verdict:
                out.append((frame, name))
            frame = frame.f_back
            depth += 1
        return out

    def ranking(self, min_share: float = 0.0) -> list[HotSpot]:
        """Targets by share of in-scope samples in the window, largest first (those seen
        returning before those not)."""
        horizon = self._clock() - self._window
        with self._lock:
            while self._samples and self._samples[0][0] < horizon:
                self._samples.popleft()
            counts = collections.Counter(target for _, target in self._samples)
            returned = set(self._returned)
            oldest: dict[str, float] = {}
            for held in self._live.values():
                for _, name, since in held.values():
                    oldest[name] = min(since, oldest.get(name, since))
        total = sum(counts.values())
        if total == 0:
            return []
        # a loop that never returns is no target, and its samples are no target's share
        eligible = sum(n for t, n in counts.items() if t in returned) or total
        now = self._clock()
        spots = [HotSpot(t, n / (eligible if t in returned else total), n,
                         returning=t in returned,
                         running_seconds=now - oldest[t] if t in oldest else 0.0)
                 for t, n in counts.most_common()]
        spots.sort(key=lambda spot: (not spot.returning, -spot.samples))
        return [spot for spot in spots if spot.share >= min_share]

    def window_samples(self) -> int:
        with self._lock:
            return len(self._samples)

    def reset(self) -> None:
        """Forget the window, e.g. after a swap changed what is hot."""
        with self._lock:
            self._samples.clear()
