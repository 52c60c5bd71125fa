"""The control API of the real daemon: approve, rollback, pause and resume through the socket."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.live import SELFMOD, LiveDaemon, NotifyListener, cli, quick_config, seed_version

pytestmark = pytest.mark.slow

ACTIVE = "demo.logstats:top_k"  # restored at start, then rolled back
WAITING = "demo.logstats:time_range"  # awaits approval, then approved
SLOW = "demo.logstats:percentile"  # awaits approval; approved, the canary rolls it back
NO_CYCLES = "version: 1\ncycle:\n  warmup_seconds: 86400\n"  # the loop runs, no cycle starts


def _wait_until_serving(daemon: LiveDaemon, state: Path, cwd: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert daemon.proc.poll() is None, daemon.tail()
        status = cli("status", "--state-dir", str(state), cwd=cwd)
        if status["running"]:
            return dict(status)
        time.sleep(0.2)
    raise AssertionError(f"the daemon never answered on its socket:\n{daemon.tail()}")


@pytest.fixture(scope="module")
def quiet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A daemon that restored one version, holds one awaiting approval, and runs no cycles."""
    root = tmp_path_factory.mktemp("control")
    state = root / "state"
    earlier = seed_version(state, ACTIVE, "accepted first, then replaced")
    active = seed_version(state, ACTIVE, "restored at start")
    waiting = seed_version(state, WAITING, "waits for approval", awaiting_approval=True)
    slow = seed_version(state, SLOW, "sleeps", awaiting_approval=True, sleep_seconds=0.005)
    config = root / "selfmod.yaml"
    config.write_text(NO_CYCLES)
    daemon = LiveDaemon(["--config", str(config), "--state-dir", str(state), "--metrics-port",
                         "0", "--scope", ACTIVE, WAITING, SLOW], root)
    try:
        _wait_until_serving(daemon, state, root)
        yield {"root": root, "state": state, "daemon": daemon, "active": active,
               "earlier": earlier, "waiting": waiting, "slow": slow}
    finally:
        daemon.proc.terminate()
        daemon.finish(60)


def _raw(sock_path: Path, request: bytes) -> tuple[int, dict[str, Any]]:
    """Send one raw HTTP request over the socket; the status code and the JSON body."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(sock_path))
        sock.sendall(request)
        reply = b""
        while True:
            chunk = sock.recv(4096)
            reply += chunk
            head, _, body = reply.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")]
            if not chunk or (length and len(body) >= length[0]):
                break
    return int(head.split()[1]), json.loads(body)


def _post(sock_path: Path, route: str, body: bytes) -> tuple[int, dict[str, Any]]:
    return _raw(sock_path, b"POST " + route.encode() + b" HTTP/1.1\r\nHost: selfmod\r\n"
                b"Content-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


def test_status_lists_the_restored_and_the_waiting_version(quiet: dict[str, Any]) -> None:
    """`selfmod status` shows the restored version as active and the others as awaiting approval."""
    status = cli("status", "--state-dir", str(quiet["state"]), cwd=quiet["root"])
    assert status["active"].get(ACTIVE) == quiet["active"]
    assert status["awaiting_approval"] == {quiet["waiting"]: WAITING, quiet["slow"]: SLOW}
    text = subprocess.run([*SELFMOD, "status", "--state-dir",
                           str(quiet["state"])], cwd=quiet["root"], capture_output=True,
                          text=True, timeout=60)
    assert text.returncode == 0 and "running: yes" in text.stdout, text.stderr
    assert "awaiting approval: 2" in text.stdout and WAITING in text.stdout


def test_approve_rolls_the_waiting_version_out_under_the_canary(quiet: dict[str, Any]) -> None:
    """`selfmod approve PREFIX` swaps the version in after a baseline and watches it pass."""
    waiting, state, root = quiet["waiting"], str(quiet["state"]), quiet["root"]
    answer = cli("approve", waiting[:10], "--state-dir", state, cwd=root)
    assert (answer["approved"], answer["target"]) == (waiting, WAITING)
    # while it rolls out, it is neither awaiting approval nor approvable again
    error = cli("approve", waiting[:10], "--state-dir", state, cwd=root, ok=False)
    assert "being rolled out" in error["error"]
    swapped = quiet["daemon"].wait_for("swapped", 60, lambda e: e["version"] == waiting)
    assert swapped["target"] == WAITING
    status = cli("status", "--state-dir", state, cwd=root)
    assert status["active"][WAITING] == waiting
    assert waiting not in status["awaiting_approval"]
    passed = quiet["daemon"].wait_for("canary_passed", 60, lambda e: e["version"] == waiting)
    assert passed["calls"] > 0
    history = {v["id"]: v for v in cli("history", "--state-dir", state, cwd=root)}
    assert history[waiting]["status"] == "active"
    assert cli("status", "--state-dir", state, cwd=root)["approving"] == {}


def test_an_approved_version_that_regresses_is_rolled_back_by_the_canary(
        quiet: dict[str, Any]) -> None:
    """Approval does not skip the canary: a slower version is swapped in, then rolled back."""
    slow, state, root = quiet["slow"], quiet["state"], quiet["root"]
    cli("approve", slow[:10], "--state-dir", str(state), cwd=root)
    quiet["daemon"].wait_for("swapped", 60, lambda e: e["version"] == slow)
    rolled = quiet["daemon"].wait_for("rolled_back", 60, lambda e: e["version"] == slow)
    assert (rolled["target"], rolled["reason"], rolled["restored"]) == \
        (SLOW, "canary_latency", "")
    status = cli("status", "--state-dir", str(state), cwd=root)
    assert SLOW not in status["active"] and status["approving"] == {}
    history = {v["id"]: v for v in cli("history", "--state-dir", str(state), cwd=root)}
    assert history[slow]["status"] == "rolled_back"


def test_approve_refuses_versions_that_do_not_wait(quiet: dict[str, Any]) -> None:
    """Approving an active or unknown version is an error that says why, and changes nothing."""
    state, root = str(quiet["state"]), quiet["root"]
    error = cli("approve", quiet["active"][:12], "--state-dir", state, cwd=root, ok=False)
    assert "not awaiting approval" in error["error"]
    error = cli("approve", "0000ffff", "--state-dir", state, cwd=root, ok=False)
    assert "no version starts with '0000ffff'" in error["error"]


def test_rollback_by_prefix_falls_back_to_the_replaced_version_then_the_original(
        quiet: dict[str, Any]) -> None:
    """`selfmod rollback PREFIX` puts back what the version replaced, logged and audited.

    The version active at start had replaced an earlier one; the restart put that
    one back beneath it, so the first rollback falls back to it, the second to
    the original code.
    """
    active, earlier = quiet["active"], quiet["earlier"]
    state, root = quiet["state"], quiet["root"]
    answer = cli("rollback", active[:8], "--state-dir", str(state), cwd=root)
    assert answer == {"rolled_back": active, "target": ACTIVE, "restored": earlier,
                      "excluded": True}  # the operator's "no" sticks: see below
    status = cli("status", "--state-dir", str(state), cwd=root)
    assert status["active"][ACTIVE] == earlier
    event = quiet["daemon"].wait_for("rolled_back", 10, lambda e: e["version"] == active)
    assert (event["target"], event["version"], event["reason"], event["restored"]) == \
        (ACTIVE, active, "operator", earlier)
    history = {v["id"]: v for v in cli("history", "--state-dir", str(state), cwd=root)}
    assert (history[active]["status"], history[earlier]["status"]) == ("rolled_back", "active")
    error = cli("rollback", active[:8], "--state-dir", str(state), cwd=root, ok=False)
    assert "no active version starts with" in error["error"]

    text = subprocess.run([*SELFMOD, "rollback", earlier[:12], "--state-dir", str(state)],
                          cwd=root, capture_output=True, text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    assert f"rolled back {earlier[:12]} on {ACTIVE}; now live: the original code" in text.stdout
    status = cli("status", "--state-dir", str(state), cwd=root)
    assert ACTIVE not in status["active"]
    history = {v["id"]: v for v in cli("history", "--state-dir", str(state), cwd=root)}
    assert history[earlier]["status"] == "rolled_back"
    audit = [json.loads(line) for line in (state / "audit.log").read_text().splitlines()]
    assert [(r["body"]["version"], r["body"]["restored"]) for r in audit
            if r["kind"] == "rolled_back" and r["body"]["target"] == ACTIVE] == \
        [(active, earlier), (earlier, "")]
    excluded = cli("status", "--state-dir", str(state), cwd=root)["excluded"]
    assert excluded[ACTIVE]["by"] == "rollback"
    assert [r["body"]["by"] for r in audit if r["kind"] == "excluded"
            and r["body"]["target"] == ACTIVE] == ["rollback"]  # once, not per rollback


def test_exclude_and_include_through_the_socket_are_kept_shown_and_audited(
        quiet: dict[str, Any]) -> None:
    """A live `selfmod exclude` lands in state.json and `status`; `include` takes it back;
    both are audited, and including what is not excluded is a 404 that says so."""
    state, root = quiet["state"], quiet["root"]
    target = "tests.daemon.fixtures.canary_targets:elsewhere"
    answer = cli("exclude", target, "--note", "owned by the payments team",
                 "--state-dir", str(state), cwd=root)
    assert answer == {"excluded": target, "by": "operator", "active": False}
    status = cli("status", "--state-dir", str(state), cwd=root)
    assert status["excluded"][target]["note"] == "owned by the payments team"
    saved = json.loads((state / "state.json").read_text())["excluded"]
    assert saved[target]["by"] == "operator"
    assert cli("include", target, "--state-dir", str(state), cwd=root) == {"included": target}
    assert target not in cli("status", "--state-dir", str(state), cwd=root)["excluded"]
    error = cli("include", target, "--state-dir", str(state), cwd=root, ok=False)
    assert "is not excluded" in error["error"]
    audit = [json.loads(line) for line in (state / "audit.log").read_text().splitlines()]
    assert [r["kind"] for r in audit if r["body"].get("target") == target] == \
        ["excluded", "included"]


@pytest.mark.parametrize(("route", "body", "status", "message"), [
    ("/approve", b"{{{", 400, "body is not JSON"),
    ("/approve", b"[1, 2]", 400, "body must be a JSON object"),
    ("/approve", b"{}", 400, 'body must be {"id"'),
    ("/rollback", b'{"id": 42}', 400, 'body must be {"id"'),
    ("/rollback", b'{"id": "abc"}', 400, "too short"),
    ("/rollback", b'{"id": "abcd"}', 404, "no active version starts with 'abcd'"),
    ("/approve", b'{"id": "ab"}', 400, "too short"),
    ("/nowhere", b"{}", 404, "no route POST /nowhere"),
    ("/exclude", b'{"target": 3}', 400, 'body must be {"target"'),
    ("/exclude", b'{"target": "no-colon"}', 400, 'body must be {"target"'),
    ("/include", b'{"target": "a:b"}', 404, "a:b is not excluded"),
])
def test_malformed_requests_get_clear_errors(quiet: dict[str, Any], route: str, body: bytes,
                                             status: int, message: str) -> None:
    """Bad bodies, bad ids and unknown routes answer a 4xx JSON error; the daemon lives on."""
    code, answer = _post(quiet["state"] / "control.sock", route, body)
    assert code == status and message in answer["error"], answer
    assert quiet["daemon"].proc.poll() is None


@pytest.fixture
def other_user() -> Iterator[pwd.struct_passwd]:
    """A temporary unprivileged system user, removed afterwards."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("creating another user needs root and useradd")
    name = f"smctl{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                           "/usr/sbin/nologin", name], capture_output=True, text=True,
                          check=False)
    if made.returncode != 0:
        pytest.skip(f"useradd failed: {made.stderr.strip()}")
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True, check=False)


def test_socket_is_private_to_the_daemon_user(quiet: dict[str, Any]) -> None:
    """The control socket is mode 0600 and owned by the daemon's user."""
    info = (quiet["state"] / "control.sock").stat()
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.geteuid()


def test_another_user_cannot_connect(quiet: dict[str, Any],
                                     other_user: pwd.struct_passwd) -> None:
    """A process of another (unprivileged) user is refused by the file system."""
    probe = ("import socket, sys\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "try:\n    s.connect(sys.argv[1])\n"
             "except PermissionError:\n    print('refused')\nelse:\n    print('connected')\n")
    python = shutil.which("python3", path="/usr/bin:/bin") or "python3"
    out = subprocess.run([python, "-c", probe, str(quiet["state"] / "control.sock")],
                         user=other_user.pw_uid, group=other_user.pw_gid, extra_groups=[],
                         capture_output=True, text=True, timeout=30, cwd="/")
    assert out.stdout.strip() == "refused", out.stdout + out.stderr


def test_pause_stops_cycles_and_resume_restarts_them(tmp_path: Path) -> None:
    """While paused the main loop keeps iterating but starts no cycle; after resume one starts."""
    state = tmp_path / "state"
    listener = NotifyListener()
    daemon = LiveDaemon(["--config", str(quick_config(tmp_path)), "--state-dir", str(state),
                         "--metrics-port", "0", "--scope", "demo.logstats:*"], tmp_path,
                        env={"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "1000000"})
    try:
        daemon.wait_for("cycle_started", 180)
        assert cli("pause", "--state-dir", str(state), cwd=tmp_path) == {"paused": True}
        # the cycle already in flight finishes; after that, nothing starts
        deadline = time.monotonic() + 300
        while len(daemon.events("cycle_finished")) < len(daemon.events("cycle_started")):
            assert time.monotonic() < deadline, daemon.tail()
            time.sleep(0.2)
        started = len(daemon.events("cycle_started"))
        status = cli("status", "--state-dir", str(state), cwd=tmp_path)
        assert status["paused"] is True and status["cycles"] == started
        # four watchdog pings: the loop went round several times, paused
        mark = len(listener.messages)
        for _ in range(4):
            mark = listener.wait_for(lambda m: m == "WATCHDOG=1", 30, after=mark) + 1
        assert len(daemon.events("cycle_started")) == started
        assert cli("status", "--state-dir", str(state), cwd=tmp_path)["cycles"] == started

        assert cli("resume", "--state-dir", str(state), cwd=tmp_path) == {"paused": False}
        deadline = time.monotonic() + 180
        while len(daemon.events("cycle_started")) == started:
            assert time.monotonic() < deadline, daemon.tail()
            time.sleep(0.2)
        assert cli("status", "--state-dir", str(state), cwd=tmp_path)["paused"] is False
        daemon.proc.terminate()
        assert daemon.finish(60) == 0, daemon.tail()
    finally:
        daemon.kill()
        listener.close()
