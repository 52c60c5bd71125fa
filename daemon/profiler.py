"""A sampling profiler: a thread that reads every other thread's current frame stack.

At ``hz`` samples per second it takes ``sys._current_frames()`` and, for each
thread, attributes one sample to the innermost frame whose function is in scope
(its "self" share: the code selfmod could change to make that sample go away).
Samples live in a sliding window, so the ranking follows the workload as it
changes and as swapped versions get faster.

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


@dataclass(frozen=True)
class HotSpot:
    """A target and its share of the in-scope samples in the current window."""

    target: str
    share: float
    samples: int


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
        for ident, frame in frames.items():
            if ident == skip:
                continue
            target = self._innermost_in_scope(frame)
            if target is not None:
                found.append(target)
        with self._lock:
            for target in found:
                self._samples.append((now, target))
            self.total_samples += len(found)

    def _innermost_in_scope(self, frame: types.FrameType | None) -> str | None:
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
                return name
            frame = frame.f_back
            depth += 1
        return None

    def ranking(self, min_share: float = 0.0) -> list[HotSpot]:
        """Targets by share of in-scope samples in the window, largest first."""
        horizon = self._clock() - self._window
        with self._lock:
            while self._samples and self._samples[0][0] < horizon:
                self._samples.popleft()
            counts = collections.Counter(target for _, target in self._samples)
        total = sum(counts.values())
        if total == 0:
            return []
        spots = [HotSpot(t, n / total, n) for t, n in counts.most_common()]
        return [spot for spot in spots if spot.share >= min_share]

    def window_samples(self) -> int:
        with self._lock:
            return len(self._samples)

    def reset(self) -> None:
        """Forget the window, e.g. after a swap changed what is hot."""
        with self._lock:
            self._samples.clear()
