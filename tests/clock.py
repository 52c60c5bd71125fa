"""The one fake clock the tests share: time moves only when a test says so."""

from __future__ import annotations


class FakeClock:
    """A clock in seconds that stands still, or moves ``tick`` seconds at every reading.

    ``advance`` moves it by hand (a fake ``sleep`` is ``clock.advance``).
    """

    def __init__(self, start: float = 1000.0, *, tick: float = 0.0) -> None:
        self.now = start
        self.tick = tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
