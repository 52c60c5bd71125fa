"""A circuit breaker: stop calling a model server that keeps failing, try again later.

Closed: calls go through; ``threshold`` consecutive failures open it.
Open: calls are refused at once, for ``cooldown`` seconds.
Half-open: after the cool-down one trial call goes through (others are still
refused); its success closes the breaker, its failure opens it for another
cool-down. The clock is passed in so tests move time by hand.

Kept as our own thin layer: the ``openai`` SDK has no breaker, and tenacity
retries within one call where a breaker spans calls. The breaker libraries on
PyPI (pybreaker, circuitbreaker) read the system clock themselves, so tests
could not move time by hand, and they judge a call by the exception it
raises, where the client judges by its own outcome (a bad answer means the
server is up). What they would replace is the seventy lines below.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Counts consecutive failures of whole calls and decides whether the next may run."""

    def __init__(self, threshold: int = 5, cooldown: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> State:
        with self._lock:
            return self._state()

    def _state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        """True when a call may go out now; in half-open state, only for the one trial."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "half-open" and not self._trial_running:
                self._trial_running = True
                return True
            return False

    def retry_in(self) -> float:
        """Seconds until the breaker lets a trial call through (0 when it would now)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.cooldown - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_running = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_running or self._failures >= self.threshold:
                self._opened_at = self._clock()
            self._trial_running = False
