"""The control API: HTTP/JSON over a Unix socket in the state directory.

The socket is created with mode 0600 (0660 and the configured group when one is
set), and every connection's peer is checked with ``SO_PEERCRED`` as well: a
file mode does not stop a process that already holds the right uid in another
namespace, or a socket path reached some other way. Root, the daemon's own uid
and members of the configured group are served; anyone else gets 403, and the
refusal is reported. Every request is reported with its peer (uid, pid) to
``on_request``, which the daemon turns into audit records for the routes that
change state. The CLI's ``status``, ``pause``, ``resume``, ``rollback`` and
``approve`` go through it; every answer is a JSON object, errors included
(``{"error": "..."}`` with a 4xx status).
"""

from __future__ import annotations

import contextlib
import grp
import http.client
import json
import os
import socket
import socketserver
import stat
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from daemon.errors import ControlError

MAX_BODY = 64 * 1024

# A route takes the parsed JSON body and returns (HTTP status, JSON-able answer).
Route = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of a connection, as the kernel says (``SO_PEERCRED``)."""

    pid: int
    uid: int
    gid: int


def peer_of(sock: socket.socket) -> Peer:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


def operator_check(group: str | None, own_uid: int | None = None) -> Callable[[Peer], bool]:
    """Who may use the socket: root, the daemon's own uid, and members of ``group``."""
    me = os.getuid() if own_uid is None else own_uid
    gid = grp.getgrnam(group).gr_gid if group is not None else None

    def allowed(peer: Peer) -> bool:
        if peer.uid in (0, me):
            return True
        if gid is None:
            return False
        return peer.gid == gid or gid in _groups_of(peer.uid)

    return allowed


def _groups_of(uid: int) -> set[int]:
    import pwd

    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return set()
    return {group.gr_gid for group in grp.getgrall() if name in group.gr_mem}


# (peer, method, path, HTTP status) of every request, refusals included
RequestHook = Callable[[Peer, str, str, int], None]


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    routes: dict[tuple[str, str], Route]
    allowed: Callable[[Peer], bool]
    on_request: RequestHook | None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def address_string(self) -> str:  # Unix sockets have no client address
        return "control.sock"

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, sort_keys=True).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        try:
            peer = peer_of(self.connection)
        except OSError:
            peer = Peer(0, -1, -1)  # not a Unix socket peer we can name: never allowed
        status = self._serve(method, peer)
        if self.server.on_request is not None:
            # reporting must not take the control socket down
            with contextlib.suppress(Exception):
                self.server.on_request(peer, method, self.path, status)

    def _serve(self, method: str, peer: Peer) -> int:
        if peer.uid < 0 or not self.server.allowed(peer):
            self._answer(403, {"error": f"uid {peer.uid} may not use this socket: it is for "
                                        "root, the daemon's user and the control group"})
            return 403
        route = self.server.routes.get((method, self.path))
        if route is None:
            known = sorted(f"{m} {p}" for m, p in self.server.routes)
            self._answer(404, {"error": f"no route {method} {self.path}", "routes": known})
            return 404
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._answer(400, {"error": "Content-Length is not a number"})
            return 400
        if length > MAX_BODY:
            self._answer(413, {"error": f"body over {MAX_BODY} bytes"})
            return 413
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError as exc:
            self._answer(400, {"error": f"body is not JSON: {exc}"})
            return 400
        if not isinstance(body, dict):
            self._answer(400, {"error": "body must be a JSON object"})
            return 400
        try:
            status, answer = route(body)
        except Exception as exc:  # a failing route answers 500, the server stays up
            status, answer = 500, {"error": f"{type(exc).__name__}: {exc}"}
        self._answer(status, answer)
        return status

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")


class ControlServer:
    """Serves ``routes`` on a Unix socket at ``path`` in a background thread."""

    def __init__(self, path: Path, routes: dict[tuple[str, str], Route],
                 group: str | None = None, *, allowed: Callable[[Peer], bool] | None = None,
                 on_request: RequestHook | None = None) -> None:
        self.path = path
        _remove_stale(path)
        old = os.umask(0o177)
        try:
            self._server = _Server(str(path), _Handler)
        finally:
            os.umask(old)
        self._server.routes = routes
        self._server.allowed = allowed if allowed is not None else operator_check(group)
        self._server.on_request = on_request
        if group is not None:
            os.chown(path, -1, grp.getgrnam(group).gr_gid)
            os.chmod(path, 0o660)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="selfmod-control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.path.unlink(missing_ok=True)


def _remove_stale(path: Path) -> None:
    """Remove a socket left by a dead daemon; refuse to steal one that answers."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlError(f"{path} exists and is not a socket; remove it or choose another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1)
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise ControlError(f"another daemon is listening on {path}; stop it first "
                       "or use another --state-dir")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class ControlClient:
    """Talks to a running daemon; raises ControlError when none answers."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout

    def request(self, method: str, route: str, body: dict[str, Any] | None = None
                ) -> dict[str, Any]:
        conn = _UnixConnection(str(self.path), self.timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload else {}
            conn.request(method, route, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read(MAX_BODY * 16)
        except FileNotFoundError as exc:
            raise ControlError(f"no daemon is running (no socket at {self.path})") from exc
        except ConnectionRefusedError as exc:
            raise ControlError(f"no daemon is listening on {self.path}") from exc
        except PermissionError as exc:
            raise ControlError(f"permission denied on {self.path}: run as the daemon's user "
                               "or a member of its control group") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ControlError(f"control socket {self.path}: {exc}") from exc
        finally:
            conn.close()
        try:
            answer = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ControlError(f"the daemon answered something that is not JSON: {raw[:200]!r}"
                               ) from exc
        if response.status >= 400:
            raise ControlError(str(answer.get("error", f"HTTP {response.status}")))
        return dict(answer)

    def available(self) -> bool:
        try:
            self.request("GET", "/status")
        except ControlError:
            return False
        return True
