"""Tests for daemon.control: HTTP/JSON over a 0600 Unix socket."""

import os
import socket
import stat

import pytest

from daemon.control import ControlClient, ControlServer, Peer, operator_check
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


def test_a_peer_the_check_refuses_gets_403_and_is_reported(tmp_path):
    """SO_PEERCRED decides: a refused peer gets 403, and every request reaches on_request."""
    seen = []
    srv = ControlServer(tmp_path / "control.sock", {("POST", "/pause"): lambda b: (200, {})},
                        allowed=lambda peer: False,
                        on_request=lambda peer, method, path, status:
                        seen.append((peer.uid, peer.pid, method, path, status)))
    srv.start()
    try:
        with pytest.raises(ControlError, match="may not use this socket"):
            ControlClient(srv.path).request("POST", "/pause", {})
    finally:
        srv.stop()
    assert seen == [(os.getuid(), os.getpid(), "POST", "/pause", 403)]


def test_operator_check_admits_root_the_daemon_and_the_group_only():
    """Root, the daemon's own uid and the control group's members pass; anyone else does not."""
    import grp

    group = grp.getgrgid(os.getgid()).gr_name
    check = operator_check(None, own_uid=1234)
    assert check(Peer(1, 0, 0)) and check(Peer(1, 1234, 99))
    assert not check(Peer(1, 4321, 4321))
    with_group = operator_check(group, own_uid=1234)
    assert with_group(Peer(1, 4321, os.getgid()))
    assert not with_group(Peer(1, 4321, 4321))


@pytest.mark.skipif(os.geteuid() != 0, reason="changing uid needs root")
def test_another_uid_is_refused_even_when_the_file_mode_would_let_it_in():
    """With the socket made world-writable by hand, uid 65534 still gets 403 from the daemon."""
    import shutil
    import subprocess
    import sys

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to run as another uid")
    import tempfile
    from pathlib import Path

    # pytest's tmp_path sits under a 0700 directory; the other uid must reach the socket
    where = Path(tempfile.mkdtemp(prefix="selfmod-peer-"))
    where.chmod(0o755)
    srv = ControlServer(where / "control.sock", {("GET", "/status"): lambda b: (200, {})})
    srv.start()
    try:
        os.chmod(srv.path, 0o666)
        code = ("import sys; from pathlib import Path; from daemon.control import ControlClient\n"
                "try:\n    ControlClient(Path(sys.argv[1])).request('GET', '/status')\n"
                "except Exception as exc:\n    print(exc); sys.exit(3)\n")
        out = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                              sys.executable, "-c", code, str(srv.path)],
                             capture_output=True, text=True, timeout=60, check=False)
    finally:
        srv.stop()
        shutil.rmtree(where, ignore_errors=True)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "uid 65534 may not use this socket" in out.stdout
