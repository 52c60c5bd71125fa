"""The cycle in flight: which target, which stage, since when; followed from the events.

A cycle's long steps (recording up to its timeout, a shadow run of 10-45 s, a
canary window) used to show nothing between ``cycle_started`` and
``cycle_finished``. :class:`CycleProgress` subscribes to the event bus and keeps
the stage the events say the cycle is in; ``selfmod status`` shows it, and each
change of stage is said on the systemd ``STATUS=`` line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from daemon import events as ev


class CycleProgress:
    """Event-bus subscriber: the stage of the cycle in flight, and when it began."""

    def __init__(self, say: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._say = say
        self._clock = clock
        self._lock = threading.Lock()
        self._current: dict[str, Any] | None = None
        self._cycles = 0

    def on_event(self, event: ev.Event) -> None:
        match event:
            case ev.CycleStarted(target=target):
                self._cycles += 1
                self._enter(target, "recording live calls", started=True)
            case ev.CorpusRecorded(target=target, calls=calls):
                self._enter(target, f"proposing ({calls} calls recorded)")
            case ev.CandidateProposed(target=target, origin=origin, version=version):
                self._enter(target, f"judging {origin} {version[:12]} in the shadow")
            case ev.RolloutStarted(target=target, version=version):
                self._enter(target, f"rolling out {version[:12]}: baseline, swap, canary")
            case ev.CycleFinished():
                with self._lock:
                    self._current = None
            case _:
                pass

    def _enter(self, target: str, stage: str, *, started: bool = False) -> None:
        now = self._clock()
        with self._lock:
            if self._current is None or started:
                self._current = {"target": target, "started": now}
            self._current.update(stage=stage, stage_started=now)
            line = f"cycle {self._cycles}: {target}: {stage}"
        self._say(line)

    def snapshot(self) -> dict[str, Any] | None:
        """The cycle in flight (target, stage, seconds in the cycle and in the stage), if any."""
        now = self._clock()
        with self._lock:
            if self._current is None:
                return None
            current = dict(self._current)
        return {"target": current["target"], "stage": current["stage"],
                "seconds": round(now - current["started"], 1),
                "stage_seconds": round(now - current["stage_started"], 1)}
