"""One stoppable base for every long-lived thread the daemon owns.

Threads are stopped by setting an event and joined on shutdown; ``run_step`` is
called in a loop with ``interval`` seconds between calls, and an exception in a
step is reported and does not end the thread (a failed profiler sample must not
take the profiler down for good).
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class StoppableThread(threading.Thread):
    """A daemon-owned thread that runs ``step()`` every ``interval`` seconds until stopped."""

    def __init__(self, name: str, interval: float,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        super().__init__(name=name, daemon=True)
        self.interval = interval
        self.stopped = threading.Event()
        self._on_error = on_error

    def step(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.step()
            except Exception as exc:
                if self._on_error is not None:
                    self._on_error(exc)
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()

    def stop_and_join(self, timeout: float = 5.0) -> None:
        self.stop()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
