"""The systemd notification protocol (sd_notify), spoken without libsystemd.

systemd passes the address of a Unix datagram socket in ``NOTIFY_SOCKET``; a
service reports its state by sending newline-separated ``KEY=VALUE`` lines to
it. Outside systemd the variable is unset and every call here is a no-op, so
the daemon calls the same methods whether or not it runs as a unit.

The life cycle the daemon drives (see ``systemd/selfmod.service``)::

    notifier = Notifier()
    notifier.status("restoring state")
    ...restore the active patch set...        # READY must wait for this
    notifier.ready(status="serving; 3 patches active")
    watchdog = ProgressWatchdog.from_notifier(notifier)   # None without WatchdogSec
    while running:
        ...one iteration...
        if watchdog: watchdog.progress()
    on SIGHUP:  notifier.reloading(); ...reload...; notifier.ready()
    on SIGTERM: notifier.stopping(); ...drain...

Sending never raises: a lost notification must not take the daemon down
(systemd notices a missing READY or WATCHDOG on its own). Each ``send`` says
whether the datagram left, and ``last_error`` keeps the reason when it did not.
An address this module cannot use is an operator-visible misconfiguration and
raises :class:`NotifyError` at construction.
"""

from __future__ import annotations

import enum
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

from envelope.threads import StoppableThread


class NotifyError(ValueError):
    """``NOTIFY_SOCKET`` names an address this module cannot send to."""


class _FromEnvironment(enum.Enum):
    TOKEN = enum.auto()


#: Default for ``Notifier(address=...)``: read ``NOTIFY_SOCKET`` when the
#: notifier is built (not when this module is imported), so tests and
#: re-executed daemons see the environment they actually have.
FROM_ENVIRONMENT = _FromEnvironment.TOKEN


def _socket_address(address: str) -> str | bytes:
    """``@name`` is Linux's abstract namespace (a leading NUL); ``/path`` a file."""
    if address.startswith("@"):
        return b"\0" + address[1:].encode()
    if address.startswith("/"):
        return address
    # systemd 254+ may hand out vsock: addresses to VMs; nothing here runs in one.
    raise NotifyError(
        f"NOTIFY_SOCKET={address!r} is neither an absolute path nor an abstract socket "
        "name starting with '@'; unset it or run under a systemd that passes a Unix socket")


def _one_line(text: str) -> str:
    """Field values end at a newline in the protocol, so fold them into one line."""
    return " ".join(text.splitlines())


class Notifier:
    """Sends service state to systemd over ``NOTIFY_SOCKET``; inert when that is unset."""

    def __init__(self, address: str | _FromEnvironment | None = FROM_ENVIRONMENT, *,
                 environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 getpid: Callable[[], int] = os.getpid) -> None:
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        if isinstance(address, _FromEnvironment):
            address = self._environ.get("NOTIFY_SOCKET") or None
        self.address = address
        self._target = None if address is None else _socket_address(address)
        self._clock = clock
        self._getpid = getpid
        self.last_error: OSError | None = None

    @property
    def enabled(self) -> bool:
        """True when there is a socket to talk to, i.e. systemd started us as Type=notify."""
        return self._target is not None

    def send(self, **fields: str | int) -> bool:
        """Send one datagram of ``KEY=VALUE`` lines; True when it was sent."""
        if self._target is None:
            return False
        payload = "\n".join(f"{key}={_one_line(str(value))}" for key, value in fields.items())
        try:
            # One socket per message, as libsystemd does: nothing to leak, nothing to
            # share between the main thread and the watchdog thread.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(payload.encode(), self._target)
        except OSError as exc:
            self.last_error = exc
            return False
        self.last_error = None
        return True

    def ready(self, status: str | None = None) -> bool:
        """Startup (or a reload) is complete: state is restored and the daemon serves."""
        if status is None:
            return self.send(READY=1)
        return self.send(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        """A one-line, human-readable state shown by ``systemctl status``."""
        return self.send(STATUS=text)

    def reloading(self) -> bool:
        """A reload began; ``ready()`` ends it.

        ``MONOTONIC_USEC`` (CLOCK_MONOTONIC in microseconds) lets systemd tell this
        reload apart from an earlier one; the injected clock must be that clock.
        """
        return self.send(RELOADING=1, MONOTONIC_USEC=int(self._clock() * 1_000_000))

    def stopping(self) -> bool:
        """Shutdown began: the cycle in flight is finishing and shadows are being killed."""
        return self.send(STOPPING=1)

    def watchdog(self) -> bool:
        """Tell systemd the service is alive; only the progress watchdog should call this."""
        return self.send(WATCHDOG=1)

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time to start or stop, e.g. while a large state restores."""
        return self.send(EXTEND_TIMEOUT_USEC=int(seconds * 1_000_000))

    def watchdog_interval(self) -> float | None:
        """The WatchdogSec= timeout in seconds, or None when the watchdog is off for us.

        As in sd_watchdog_enabled(): ``WATCHDOG_USEC`` must be a positive integer, and
        when ``WATCHDOG_PID`` is set it must name this process (a child that inherited
        the environment must not ping on its parent's behalf).
        """
        usec = self._environ.get("WATCHDOG_USEC", "")
        if not usec.isdigit() or int(usec) == 0:
            return None
        pid = self._environ.get("WATCHDOG_PID")
        if pid is not None and (not pid.isdigit() or int(pid) != self._getpid()):
            return None
        return int(usec) / 1_000_000


class ProgressWatchdog(StoppableThread):
    """Pings the systemd watchdog only while the main loop keeps making progress.

    The main loop calls :meth:`progress` once per iteration; every half watchdog
    timeout this thread sends ``WATCHDOG=1`` if, and only if, ``progress()`` was
    called since the previous ping. A timer alone would keep a hung daemon alive;
    tying the ping to progress lets systemd kill and restart it.

    Some single steps of the loop legitimately outlast the watchdog timeout (a
    shadow run may take a minute). Before such a step the loop calls
    ``progress(grace=bound)``, where ``bound`` is the step's own deadline: pings
    continue until that much time has passed without further progress, so only a
    step stuck past its own deadline stops them. A plain ``progress()`` ends any
    grace, so an idle loop is again judged iteration by iteration.
    """

    def __init__(self, notifier: Notifier, timeout: float, *,
                 clock: Callable[[], float] = time.monotonic,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        if timeout <= 0:
            raise ValueError(f"watchdog timeout must be positive, got {timeout}")
        super().__init__(name="selfmod-watchdog", interval=timeout / 2, on_error=on_error)
        self.notifier = notifier
        self.timeout = timeout
        self._clock = clock
        # A counter rather than a flag: the main loop only ever increments it, the
        # watchdog only reads it, so neither side needs a lock on the hot path.
        self._progress = 0
        self._seen = 0
        self._grace_until = 0.0
        self.last_progress_at = clock()
        self.last_ping_at: float | None = None
        self.pings = 0

    @classmethod
    def from_notifier(cls, notifier: Notifier, *,
                      clock: Callable[[], float] = time.monotonic,
                      on_error: Callable[[BaseException], None] | None = None,
                      ) -> ProgressWatchdog | None:
        """A watchdog for the interval systemd asked for, or None when it asked for none."""
        timeout = notifier.watchdog_interval()
        if timeout is None or not notifier.enabled:
            return None
        return cls(notifier, timeout, clock=clock, on_error=on_error)

    def progress(self, grace: float = 0.0) -> None:
        """Record that the main loop completed an iteration (or a step of a long one).

        ``grace`` is how long the loop may now go without progress and still be
        pinged for: the deadline of the step it is about to take.
        """
        now = self._clock()
        self._grace_until = now + grace if grace > 0 else 0.0
        self._progress += 1
        self.last_progress_at = now

    def stalled_for(self) -> float:
        """Seconds since the last ``progress()``, for status lines and logs."""
        return self._clock() - self.last_progress_at

    def step(self) -> None:
        current = self._progress
        if current == self._seen and self._clock() >= self._grace_until:
            return
        self._seen = current
        if self.notifier.watchdog():
            self.pings += 1
            self.last_ping_at = self._clock()


class Liveness:
    """What systemd hears from one daemon: READY, STATUS, RELOADING, STOPPING and the watchdog.

    STOPPING is sent once, however many ways the daemon is asked to stop. The
    watchdog, when systemd asked for one, starts with :meth:`start_watchdog`
    (after the first READY) and pings only while the main loop makes progress:
    the loop calls :meth:`progress` each iteration, and as a bus subscriber
    (:meth:`on_event`) every event published from the loop's thread counts as a
    step of the cycle in flight. Each stage of a cycle (recording, one proposer
    call, one shadow run) ends at its own deadline and the cycle publishes an
    event between stages, so pings go on for ``stage_bound()`` seconds after each
    event and stop only when a stage is stuck past its deadline. Events from other
    threads (policy watcher, workload, control socket) say nothing about the loop.
    """

    def __init__(self, notifier: Notifier, *, stage_bound: Callable[[], float],
                 clock: Callable[[], float] = time.monotonic,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.notifier = notifier
        self.watchdog: ProgressWatchdog | None = None
        self._stage_bound = stage_bound
        self._clock = clock
        self._on_error = on_error
        self._loop_thread: threading.Thread | None = None
        self._stopping_sent = False

    def status(self, text: str) -> None:
        self.notifier.status(text)

    def ready(self, status: str) -> None:
        self.notifier.ready(status=status)

    def reloading(self) -> None:
        self.notifier.reloading()

    def stopping(self) -> None:
        """STOPPING=1, the first time only."""
        if not self._stopping_sent:
            self._stopping_sent = True
            self.notifier.stopping()

    def start_watchdog(self) -> None:
        """Start pinging, if systemd asked for a watchdog (``WatchdogSec``)."""
        self.watchdog = ProgressWatchdog.from_notifier(self.notifier, clock=self._clock,
                                                       on_error=self._on_error)
        if self.watchdog is not None:
            self.watchdog.start()

    def loop_started(self) -> None:
        """The calling thread is the main loop: its events are steps of a cycle."""
        self._loop_thread = threading.current_thread()

    def progress(self, grace: float = 0.0) -> None:
        """The main loop moved on; ``grace``: how long its next step may take."""
        if self.watchdog is not None:
            self.watchdog.progress(grace)

    def on_event(self, _event: object) -> None:
        """Bus subscriber: an event the main loop publishes is a step of the cycle in flight."""
        if threading.current_thread() is self._loop_thread:
            self.progress(grace=self._stage_bound())

    def stop(self) -> None:
        """Stop the watchdog thread, if one runs."""
        if self.watchdog is not None:
            self.watchdog.stop_and_join()
