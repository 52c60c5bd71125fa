"""Tests for daemon/notify.py against a real Unix datagram socket, as systemd would hold it."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.notify import Liveness, Notifier, NotifyError, ProgressWatchdog

WATCHDOG_TIMEOUT = 0.2  # pings every 0.1 s: short enough for a test, long enough for 2 cores


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    """A bound datagram socket in a short temporary path (sun_path holds 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="sdn") as directory:
        path = str(Path(directory) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        try:
            yield path, sock
        finally:
            sock.close()


def receive(sock: socket.socket, timeout: float = 2.0) -> str | None:
    """The next datagram as text, or None when none arrives within ``timeout``."""
    sock.settimeout(timeout)
    try:
        return sock.recv(4096).decode()
    except TimeoutError:
        return None


def test_ready_is_received(notify_socket: tuple[str, socket.socket]) -> None:
    """ready() delivers READY=1 to the socket."""
    path, sock = notify_socket
    assert Notifier(path).ready()
    assert receive(sock) == "READY=1"


def test_ready_can_carry_a_status(notify_socket: tuple[str, socket.socket]) -> None:
    """ready(status=...) sends READY and STATUS in one datagram, so they arrive together."""
    path, sock = notify_socket
    Notifier(path).ready(status="serving; 2 patches active")
    assert receive(sock) == "READY=1\nSTATUS=serving; 2 patches active"


def test_status_text_is_one_line(notify_socket: tuple[str, socket.socket]) -> None:
    """A multi-line status is folded, since a newline would end the field."""
    path, sock = notify_socket
    Notifier(path).status("restoring state\n3 versions")
    assert receive(sock) == "STATUS=restoring state 3 versions"


@pytest.mark.parametrize(("method", "expected"), [
    ("stopping", "STOPPING=1"),
    ("watchdog", "WATCHDOG=1"),
])
def test_state_messages(notify_socket: tuple[str, socket.socket], method: str,
                        expected: str) -> None:
    """stopping() and watchdog() send their protocol lines."""
    path, sock = notify_socket
    getattr(Notifier(path), method)()
    assert receive(sock) == expected


def test_reloading_carries_the_monotonic_clock(notify_socket: tuple[str, socket.socket]) -> None:
    """reloading() sends RELOADING=1 with MONOTONIC_USEC from the injected clock."""
    path, sock = notify_socket
    Notifier(path, clock=lambda: 12.5).reloading()
    assert receive(sock) == "RELOADING=1\nMONOTONIC_USEC=12500000"


def test_extend_timeout_in_microseconds(notify_socket: tuple[str, socket.socket]) -> None:
    """extend_timeout() asks systemd for more time in microseconds."""
    path, sock = notify_socket
    Notifier(path).extend_timeout(45)
    assert receive(sock) == "EXTEND_TIMEOUT_USEC=45000000"


def test_abstract_socket_name() -> None:
    """An address starting with @ reaches a socket in the abstract namespace."""
    name = f"selfmod-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        assert Notifier(f"@{name}").ready()
        assert receive(sock) == "READY=1"


def test_address_comes_from_the_environment(notify_socket: tuple[str, socket.socket],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """With no address given, NOTIFY_SOCKET is read when the notifier is built."""
    path, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notifier = Notifier()
    assert notifier.enabled
    notifier.status("from the environment")
    assert receive(sock) == "STATUS=from the environment"


def test_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside systemd every call does nothing, raises nothing and reports nothing sent."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    for notifier in (Notifier(), Notifier(None), Notifier(environ={})):
        assert not notifier.enabled
        assert not notifier.ready()
        assert not notifier.status("idle")
        assert not notifier.reloading()
        assert not notifier.stopping()
        assert not notifier.watchdog()
        assert notifier.last_error is None


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    """Sending to a socket that is gone returns False and keeps the error."""
    notifier = Notifier(str(tmp_path / "gone"))
    assert not notifier.ready()
    assert isinstance(notifier.last_error, OSError)


def test_unusable_address_is_a_configuration_error() -> None:
    """An address that is neither a path nor an abstract name fails loudly at start."""
    with pytest.raises(NotifyError, match="NOTIFY_SOCKET"):
        Notifier("vsock:2:1234")


@pytest.mark.parametrize(("environ", "expected"), [
    ({"WATCHDOG_USEC": "30000000"}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    """WATCHDOG_USEC gives the timeout, unless WATCHDOG_PID names another process."""
    notifier = Notifier("/run/notify", environ=environ, getpid=lambda: 4242)
    assert notifier.watchdog_interval() == expected


def test_watchdog_is_built_only_when_systemd_asks() -> None:
    """from_notifier() gives no watchdog without WatchdogSec, else one pinging at half of it."""
    assert ProgressWatchdog.from_notifier(Notifier("/run/notify", environ={})) is None
    assert ProgressWatchdog.from_notifier(
        Notifier(None, environ={"WATCHDOG_USEC": "30000000"})) is None
    watchdog = ProgressWatchdog.from_notifier(
        Notifier("/run/notify", environ={"WATCHDOG_USEC": "30000000"}))
    assert watchdog is not None
    assert watchdog.interval == 15.0


def test_stalled_for_uses_the_injected_clock() -> None:
    """stalled_for() counts from the last progress() on the injected clock."""
    now = [100.0]
    watchdog = ProgressWatchdog(Notifier(None), 30, clock=lambda: now[0])
    now[0] = 130.0
    assert watchdog.stalled_for() == 30.0
    watchdog.progress()
    now[0] = 131.5
    assert watchdog.stalled_for() == 1.5


def _pings_while(sock: socket.socket, watchdog: ProgressWatchdog, *, progressing: bool,
                 seconds: float) -> int:
    """Run a fake main loop for ``seconds`` and count the WATCHDOG=1 datagrams that arrive."""
    pings = 0
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if progressing:
            watchdog.progress()
        message = receive(sock, timeout=min(left, 0.01))
        if message is not None:
            assert message == "WATCHDOG=1"
            pings += 1
    return pings


def test_watchdog_pings_only_while_the_main_loop_progresses(
        notify_socket: tuple[str, socket.socket]) -> None:
    """Pings flow while progress() is called, stop when it stops, and resume with it."""
    path, sock = notify_socket
    watchdog = ProgressWatchdog(Notifier(path), WATCHDOG_TIMEOUT)
    watchdog.start()
    try:
        assert _pings_while(sock, watchdog, progressing=True, seconds=1.0) >= 3
        # The main loop hangs. One ping may still be in flight for the last progress.
        assert _pings_while(sock, watchdog, progressing=False, seconds=0.5) <= 1
        assert _pings_while(sock, watchdog, progressing=False, seconds=0.8) == 0
        assert _pings_while(sock, watchdog, progressing=True, seconds=1.0) >= 3
    finally:
        watchdog.stop_and_join()
    assert not watchdog.is_alive()


def test_watchdog_sends_nothing_before_the_first_progress(
        notify_socket: tuple[str, socket.socket]) -> None:
    """A main loop that never completes an iteration never gets a ping."""
    path, sock = notify_socket
    watchdog = ProgressWatchdog(Notifier(path), WATCHDOG_TIMEOUT)
    watchdog.start()
    try:
        assert _pings_while(sock, watchdog, progressing=False, seconds=0.6) == 0
    finally:
        watchdog.stop_and_join()
    assert watchdog.pings == 0


def test_grace_keeps_pinging_through_a_long_step_until_its_deadline(
        notify_socket: tuple[str, socket.socket]) -> None:
    """After progress(grace=s) pings continue without further progress for s seconds, then stop."""
    path, sock = notify_socket
    now = [100.0]
    watchdog = ProgressWatchdog(Notifier(path), 1.0, clock=lambda: now[0])
    watchdog.progress(grace=10.0)
    watchdog.step()
    assert receive(sock) == "WATCHDOG=1"
    now[0] = 109.5  # the step is still within its own deadline
    watchdog.step()
    assert receive(sock) == "WATCHDOG=1"
    now[0] = 110.0  # past it: the step is stuck
    watchdog.step()
    assert receive(sock, timeout=0.2) is None
    assert watchdog.pings == 2


def test_plain_progress_ends_a_grace(notify_socket: tuple[str, socket.socket]) -> None:
    """A progress() without grace returns the watchdog to judging each iteration."""
    path, sock = notify_socket
    now = [0.0]
    watchdog = ProgressWatchdog(Notifier(path), 1.0, clock=lambda: now[0])
    watchdog.progress(grace=60.0)
    watchdog.progress()
    watchdog.step()
    assert receive(sock) == "WATCHDOG=1"
    now[0] = 1.0
    watchdog.step()
    assert receive(sock, timeout=0.2) is None


def test_watchdog_rejects_a_non_positive_timeout() -> None:
    """A zero timeout would spin; it is refused."""
    with pytest.raises(ValueError, match="positive"):
        ProgressWatchdog(Notifier(None), 0)


def test_pid_default_is_this_process() -> None:
    """Without an injected getpid, WATCHDOG_PID is compared with the real pid."""
    environ = {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier("/run/notify", environ=environ).watchdog_interval() == 1.0


# -- what systemd hears from a daemon -------------------------------------------------------


def test_stopping_is_sent_once_however_often_the_daemon_is_asked_to_stop(
        notify_socket: tuple[str, socket.socket]) -> None:
    """Liveness.stopping() sends STOPPING=1 the first time and nothing after."""
    path, sock = notify_socket
    liveness = Liveness(Notifier(path), stage_bound=lambda: 1.0)
    liveness.stopping()
    liveness.stopping()
    assert receive(sock) == "STOPPING=1"
    assert receive(sock, timeout=0.2) is None


def test_only_events_from_the_loop_thread_grant_the_next_stage_its_bound(
        notify_socket: tuple[str, socket.socket]) -> None:
    """An event published by the main loop counts as progress; one from another thread does not."""
    path, _ = notify_socket
    now = [100.0]
    liveness = Liveness(Notifier(path, environ={"WATCHDOG_USEC": "30000000"}),
                        stage_bound=lambda: 70.0, clock=lambda: now[0])
    liveness.start_watchdog()
    watchdog = liveness.watchdog
    assert watchdog is not None
    try:
        liveness.loop_started()
        now[0] = 110.0
        elsewhere = threading.Thread(target=liveness.on_event, args=(object(),))
        elsewhere.start()
        elsewhere.join()
        assert watchdog.last_progress_at == 100.0
        liveness.on_event(object())
        assert watchdog.last_progress_at == 110.0
    finally:
        liveness.stop()
    assert not watchdog.is_alive()


def test_without_a_watchdog_progress_is_a_no_op() -> None:
    """Outside systemd there is no watchdog thread and progress costs nothing."""
    liveness = Liveness(Notifier(None, environ={}), stage_bound=lambda: 1.0)
    liveness.start_watchdog()
    liveness.progress(5.0)
    liveness.stop()
    assert liveness.watchdog is None
