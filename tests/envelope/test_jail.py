"""The jail as an attacker meets it: a script run through ``selfmod jail run``, no tripwire.

Each attempt in :data:`ATTACK` reports what the kernel answered, as JSON; the
tests name the layer that refused it from that answer (the errno, the exception,
and the seccomp mode the script reads from /proc). A root-owned state directory,
config and Unix socket and a loopback TCP listener are set up outside the jail
first, each shown reachable from outside so that a refusal means the jail.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from envelope.isolation import Isolation, default_read_paths, probe_isolation

SELFMOD = [sys.executable, "-c", "import sys; from daemon.cli import main; sys.exit(main())"]
MEMORY_MB = 256
DEVICES = ("/dev/loop0", "/dev/tty1", "/dev/kvm", "/dev/zram0")

ATTACK = r'''
import ctypes, errno, json, os, socket, stat, sys

args = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
results = {}


def attempt(name):
    def wrap(fn):
        try:
            detail = fn()
        except MemoryError:
            results[name] = {"refused": True, "errno": None, "error": "MemoryError"}
        except OSError as exc:
            results[name] = {"refused": True, "errno": exc.errno, "error": str(exc)}
        else:
            results[name] = {"refused": False, "errno": None, "error": str(detail)}
        return fn
    return wrap


def check(result):
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))
    return "succeeded"


@attempt("read_etc_shadow")
def _():
    return open("/etc/shadow").read()[:10]

@attempt("read_state_file")
def _():
    return open(args["state_file"]).read()

@attempt("read_config")
def _():
    return open(args["config"]).read()

@attempt("open_device_rw")
def _():
    os.close(os.open(args["device"], os.O_RDWR))
    return args["device"]

@attempt("mknod")
def _():
    os.mknod("node", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    return "made a device node"

@attempt("fork_exec_sh")
def _():
    pid = os.fork()
    if pid == 0:
        os.execv("/bin/sh", ["sh", "-c", "exit 7"])
    return os.waitpid(pid, 0)

@attempt("connect_unix_socket")
def _():
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(args["unix_socket"])
    return "connected"

@attempt("connect_loopback_tcp")
def _():
    with socket.create_connection(("127.0.0.1", args["port"]), timeout=5):
        return "connected"

@attempt("socket_af_unix")
def _():
    socket.socket(socket.AF_UNIX).close()
    return "created"

@attempt("socket_af_inet")
def _():
    socket.socket(socket.AF_INET).close()
    return "created"

@attempt("ptrace_parent")
def _():
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    return check(libc.ptrace(16, os.getppid(), None, None))  # PTRACE_ATTACH

@attempt("unshare_user_namespace")
def _():
    return check(libc.unshare(0x10000000))  # CLONE_NEWUSER

@attempt("allocate_past_memory_limit")
def _():
    return len(bytearray(args["memory_bytes"]))

@attempt("write_outside_tmp_dir")
def _():
    with open(args["outside"], "w") as fh:
        fh.write("pwned")
    return "written"

@attempt("write_visible_code")
def _():
    with open(os.path.join(sys.prefix, "pwned"), "w") as fh:
        fh.write("pwned")
    return "written"

@attempt("write_state_dir")
def _():
    with open(os.path.join(os.path.dirname(args["state_file"]), "forged"), "w") as fh:
        fh.write("pwned")
    return "written"

@attempt("see_other_processes")
def _():
    others = [int(p) for p in os.listdir("/proc")
              if p.isdigit() and int(p) not in (1, os.getpid())]
    if others:
        return others
    raise OSError(errno.ESRCH, "no other process visible")

open("inside", "w").write("ok")  # the run's own tmp dir stays writable
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({"results": results, "uid": os.getuid(),
                  "seccomp": status["Seccomp"].strip(), "inside": os.path.exists("inside")}))
'''

# What each layer looks like from inside, in the order the tests look for it.
SECCOMP_CALLS = {"connect_unix_socket", "connect_loopback_tcp", "socket_af_unix",
                 "socket_af_inet", "ptrace_parent", "unshare_user_namespace"}


def refusing_layer(name: str, result: dict[str, object], seccomp_mode: str) -> str:
    """The layer that refused one attempt, read from what the kernel answered."""
    number = result["errno"]
    if result["error"] == "MemoryError":
        return "rlimits (RLIMIT_AS)"
    if number == errno.EPERM and name in SECCOMP_CALLS and seccomp_mode == "2":
        return "seccomp"
    if number == errno.ENOENT:
        return "private_root (not in the jail's file system)"
    if number == errno.EACCES:
        return "unprivileged_user (file permissions)"
    if number == errno.EPERM:
        return "capabilities_dropped"
    if number == errno.EAGAIN:
        return "rlimits (RLIMIT_NPROC)"
    if number == errno.EROFS:
        return "readonly_filesystem"
    if number in (errno.ENETUNREACH, errno.ECONNREFUSED):
        return "network_namespace"
    if number == errno.ESRCH:
        return "pid_namespace"
    return f"unknown (errno {number}: {result['error']})"


EXPECTED = {
    "read_etc_shadow": "private_root (not in the jail's file system)",
    "read_state_file": "private_root (not in the jail's file system)",
    "read_config": "private_root (not in the jail's file system)",
    "open_device_rw": "private_root (not in the jail's file system)",
    "mknod": "capabilities_dropped",
    "fork_exec_sh": "rlimits (RLIMIT_NPROC)",
    "connect_unix_socket": "seccomp",
    "connect_loopback_tcp": "seccomp",
    "socket_af_unix": "seccomp",
    "socket_af_inet": "seccomp",
    "ptrace_parent": "seccomp",
    "unshare_user_namespace": "seccomp",
    "allocate_past_memory_limit": "rlimits (RLIMIT_AS)",
    # Next to the run's tmp dir: its parent exists in the jail (the path to the tmp
    # dir), on the private root's read-only tmpfs.
    "write_outside_tmp_dir": "readonly_filesystem",
    "write_visible_code": "readonly_filesystem",
    "write_state_dir": "private_root (not in the jail's file system)",
    "see_other_processes": "pid_namespace",
}
LAYERS = ("network_namespace", "pid_namespace", "mount_namespace", "readonly_filesystem",
          "capabilities_dropped", "rlimits", "private_root", "unprivileged_user", "seccomp")
NOBODY = 65534


@dataclass
class Host:
    """What the attack aims at, all outside the jail, and how the daemon's side runs."""

    root: Path
    config: Path
    state_file: Path
    unix_socket: Path
    port: int
    outside: Path
    device: str
    daemon_uid: int  # 0: the root layout; else the daemon's own uid (the shipped unit's)


@pytest.fixture(scope="module")
def available() -> Isolation:
    return probe_isolation()


@pytest.fixture(params=["root", "unprivileged-daemon"])
def host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Host]:
    """A state directory, config and Unix socket only the daemon's uid may read, and a
    loopback TCP listener; the daemon is root, or an unprivileged user as under the unit."""
    if os.geteuid() != 0:
        pytest.skip("both layouts are set up by root")
    device = next((path for path in DEVICES if os.path.exists(path)), None)
    if device is None:
        pytest.skip(f"none of {DEVICES} exists here")
    uid = 0 if request.param == "root" else NOBODY
    root = tmp_path / "host"
    root.mkdir(mode=0o700)
    state = root / "state"
    state.mkdir(mode=0o700)
    state_file = state / "audit.log"
    state_file.write_text('{"seq": 1}\n')
    (root / "envelope.yaml").write_text(f"version: 1\nsandbox:\n  memory_mb: {MEMORY_MB}\n")
    config = root / "selfmod.yaml"
    config.write_text(f"version: 1\nstate_dir: {state}\npolicy: envelope.yaml\n")
    sockets = root / "sockets"
    sockets.mkdir(mode=0o700)
    unix_socket = sockets / "control.sock"
    with socket.socket(socket.AF_UNIX) as unix, socket.socket() as tcp:
        unix.bind(str(unix_socket))
        unix.listen()
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        for path in (state_file, config, root / "envelope.yaml", unix_socket):
            path.chmod(0o600)
        for path in (root, state, state_file, config, root / "envelope.yaml", sockets,
                     unix_socket):
            os.chown(path, uid, uid)
        # Both are reachable from outside the jail: a refusal inside is the jail's doing.
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(str(unix_socket))
        socket.create_connection(tcp.getsockname(), timeout=5).close()
        yield Host(root, config, state_file, unix_socket, tcp.getsockname()[1],
                   tmp_path / "outside", device, uid)


def as_daemon(host: Host) -> list[str]:
    """The prefix that runs the CLI as the daemon's uid (nothing for the root layout).

    A simulated host for an unprivileged daemon: its own mount and PID namespace
    showing what an installed daemon sees (interpreter, selfmod, its directory),
    run as ``host.daemon_uid`` in a user namespace mapping that uid to itself. The
    jail it then builds is the unprivileged one: ``unshare --user --map-root-user``.
    """
    if host.daemon_uid == 0:
        return []
    unshare, setpriv = shutil.which("unshare"), shutil.which("setpriv")
    assert unshare and setpriv
    reads = [arg for path in default_read_paths() for arg in ("--read", path)]
    return [unshare, "--pid", "--fork", "--kill-child", "--mount-proc", "--mount",
            "--propagation", "private", "--", sys.executable, "-I", "-m", "envelope.isolation",
            "init", "--tmpdir", str(host.root), "--private-root", *reads,
            "--drop-caps", setpriv, "--user", f"{host.daemon_uid}:{host.daemon_uid}", "--reap",
            "--"]


def jail_run(host: Host, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = host.root / "attack.py"
    path.write_text(script)
    os.chown(path, host.daemon_uid, host.daemon_uid)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TMPDIR": str(host.root)}
    return subprocess.run([*as_daemon(host), *SELFMOD, "jail", "run", "--json", "--config",
                           str(host.config), str(path), *args], capture_output=True, text=True,
                          timeout=120, check=False, cwd=host.root, env=env)


def attack(host: Host) -> dict[str, object]:
    targets = {"state_file": str(host.state_file), "config": str(host.config),
               "device": host.device, "unix_socket": str(host.unix_socket), "port": host.port,
               "memory_bytes": 2 * MEMORY_MB << 20, "outside": str(host.outside)}
    completed = jail_run(host, ATTACK, json.dumps(targets))
    assert completed.returncode == 0, completed.stderr
    run = json.loads(completed.stdout)
    assert run["exit_status"] == 0, run["stderr"]
    report: dict[str, object] = json.loads(run["stdout"])
    report["layers"] = run["layers"]
    return report


def test_every_attempt_is_refused_by_a_named_kernel_layer(host: Host,
                                                          available: Isolation) -> None:
    """Without the tripwire, each attack is refused by the kernel layer the table names."""
    missing = available.missing(*LAYERS)
    if missing:
        pytest.skip(f"not available here: {', '.join(missing)}")
    report = attack(host)
    results = report["results"]
    assert isinstance(results, dict) and set(results) == set(EXPECTED)
    refused = {name: refusing_layer(name, result, str(report["seccomp"]))
               for name, result in results.items()}
    succeeded = [name for name, result in results.items() if not result["refused"]]
    assert not succeeded, {name: results[name] for name in succeeded}
    assert refused == EXPECTED
    layers = report["layers"]
    assert isinstance(layers, dict)
    if host.daemon_uid == 0:  # the jail drops to the shadow user
        assert report["uid"] != 0 and layers["unprivileged_user"] is True
    else:  # it cannot: the shadow is the daemon's uid, shut out by the private root
        assert layers["unprivileged_user"] is False
    assert all(layers[name] for name in LAYERS if name != "unprivileged_user")
    assert report["inside"] is True
    assert not host.outside.exists()
    assert os.listdir(host.state_file.parent) == ["audit.log"]


def test_the_jailed_script_runs_with_the_policys_limits_and_exit_status(host: Host) -> None:
    """The file's output, arguments and exit status come back; the policy's memory limit holds."""
    script = ("import resource, sys\n"
              "print(sys.argv[1:], resource.getrlimit(resource.RLIMIT_AS)[0] >> 20)\n"
              "print('to stderr', file=sys.stderr)\n"
              "sys.exit(3)\n")
    completed = jail_run(host, script, "a", "b c")
    assert completed.returncode == 3, completed.stderr
    run = json.loads(completed.stdout)
    assert run["exit_status"] == 3
    assert run["stdout"] == f"['a', 'b c'] {MEMORY_MB}\n"
    assert run["stderr"] == "to stderr\n"


def test_a_signal_death_is_exit_status_128_plus_n(host: Host) -> None:
    """A jailed file killed by SIGTERM makes ``selfmod jail run`` exit with 143."""
    completed = jail_run(host, "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    assert completed.returncode == 128 + 15, completed.stderr
