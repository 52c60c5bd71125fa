"""Tests for daemon.control: HTTP/JSON over a 0600 Unix socket."""

import os
import socket
import stat

import pytest

from daemon.control import ControlClient, ControlServer
from daemon.errors import ControlError


@pytest.fixture
def server(tmp_path):
    calls = []

    def echo(body):
        calls.append(body)
        return 200, {"echo": body}

    def boom(body):
        raise RuntimeError("route failed")

    srv = ControlServer(tmp_path / "control.sock", {("POST", "/echo"): echo,
                                                    ("GET", "/status"): lambda b: (200, {}),
                                                    ("POST", "/boom"): boom})
    srv.start()
    yield srv, calls
    srv.stop()


def test_socket_is_private_to_the_owner(server):
    """The control socket is created with mode 0600."""
    srv, _ = server
    mode = stat.S_IMODE(os.stat(srv.path).st_mode)
    assert mode == 0o600


def test_requests_round_trip_as_json(server):
    """A JSON body reaches the route and its answer comes back as a dict."""
    srv, calls = server
    answer = ControlClient(srv.path).request("POST", "/echo", {"id": "abc"})
    assert answer == {"echo": {"id": "abc"}} and calls == [{"id": "abc"}]


def test_malformed_requests_get_clear_errors(server):
    """Unknown routes, non-JSON bodies and failing routes answer errors; the server stays up."""
    srv, _ = server
    client = ControlClient(srv.path)
    with pytest.raises(ControlError, match="no route"):
        client.request("GET", "/nope")
    with pytest.raises(ControlError, match="route failed"):
        client.request("POST", "/boom", {})
    raw = socket.socket(socket.AF_UNIX)
    raw.connect(str(srv.path))
    raw.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n{{{")
    raw.settimeout(10)
    reply = ""
    while "not JSON" not in reply:  # headers and body may arrive in separate reads
        chunk = raw.recv(4096)
        if not chunk:
            break
        reply += chunk.decode()
    raw.close()
    assert "400" in reply.splitlines()[0] and "not JSON" in reply
    assert client.available()


def test_no_daemon_means_a_clear_error(tmp_path):
    """Without a socket the client says no daemon is running."""
    with pytest.raises(ControlError, match="no daemon"):
        ControlClient(tmp_path / "control.sock").request("GET", "/status")


def test_a_live_socket_is_not_stolen(server, tmp_path):
    """A second server on the same path refuses while the first one answers."""
    srv, _ = server
    with pytest.raises(ControlError, match="another daemon"):
        ControlServer(srv.path, {})


def test_a_stale_socket_is_replaced(tmp_path):
    """A socket file left by a dead daemon is removed and a new server starts."""
    path = tmp_path / "control.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()
    srv = ControlServer(path, {("GET", "/status"): lambda b: (200, {"ok": True})})
    srv.start()
    try:
        assert ControlClient(path).request("GET", "/status") == {"ok": True}
    finally:
        srv.stop()
    assert not path.exists()
