"""Isolation layers, each proven on its own with a plain Python command inside the jail."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from envelope.isolation import JAIL_FAILED, Isolation, jail_command, jail_user, probe_isolation


@pytest.fixture(scope="module")
def available() -> Isolation:
    return probe_isolation()


def jailed(isolation: Isolation, tmpdir: Path, code: str, *args: str
           ) -> subprocess.CompletedProcess[str]:
    command = [*jail_command(isolation, str(tmpdir)), sys.executable, "-I", "-c", code, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30,
                          cwd=tmpdir, check=False, start_new_session=True)


def only(available: Isolation, **layers: bool) -> Isolation:
    missing = [name for name in layers if not getattr(available, name)]
    if missing:
        pytest.skip(f"not available here: {', '.join(missing)}")
    return Isolation(**layers)


def test_the_probe_agrees_with_unshare_here(available: Isolation) -> None:
    """network_namespace is True exactly when `unshare -n true` succeeds on this machine."""
    unshare = shutil.which("unshare")
    works = unshare is not None and subprocess.run(
        [unshare, "-n", "true"], capture_output=True, check=False).returncode == 0
    assert available.network_namespace is works
    assert all(type(value) is bool for value in available.as_dict().values())
    assert available.rlimits and available.audit_hook


def test_the_network_namespace_cuts_off_a_loopback_listener(available: Isolation,
                                                            tmp_path: Path) -> None:
    """Inside the network namespace a listener on the host's loopback is unreachable."""
    isolation = only(available, network_namespace=True)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        code = ("import socket, sys\n"
                "try:\n"
                "    socket.create_connection(('127.0.0.1', int(sys.argv[1])), 2)\n"
                "except OSError as exc:\n"
                "    print('refused', type(exc).__name__)\n"
                "else:\n"
                "    print('connected')\n")
        result = jailed(isolation, tmp_path, code, str(port))
        assert result.stdout.startswith("refused"), result.stderr
        with pytest.raises(BlockingIOError):
            listener.accept()
        # The same command outside the jail does connect: the listener itself works.
        outside = subprocess.run([sys.executable, "-I", "-c", code, str(port)],
                                 capture_output=True, text=True, check=False, timeout=30)
        assert outside.stdout.startswith("connected")
        listener.setblocking(True)
        listener.accept()[0].close()


def test_the_read_only_view_keeps_writes_inside_the_tmp_dir(available: Isolation,
                                                             tmp_path: Path) -> None:
    """Only the run's tmp dir is writable; a write next to it fails and leaves nothing."""
    isolation = only(available, mount_namespace=True, readonly_filesystem=True)
    inner = tmp_path / "jail"
    inner.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    code = ("import sys\n"
            "open(sys.argv[1] + '/inside', 'w').write('ok')\n"
            "try:\n"
            "    open(sys.argv[2], 'w').write('pwned')\n"
            "except OSError as exc:\n"
            "    print(exc.strerror)\n")
    result = jailed(isolation, inner, code, str(inner), str(victim))
    assert result.returncode == 0, result.stderr
    assert "Read-only file system" in result.stdout
    assert (inner / "inside").read_text() == "ok"
    assert not victim.exists()


def test_dropped_capabilities_cannot_undo_the_read_only_view(available: Isolation,
                                                             tmp_path: Path) -> None:
    """Without capabilities the jailed process has an empty bounding set and cannot remount."""
    isolation = only(available, mount_namespace=True, readonly_filesystem=True,
                     capabilities_dropped=True)
    code = ("status = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
            "print(int(status['CapEff'], 16), int(status['CapBnd'], 16), "
            "status['NoNewPrivs'].strip())\n")
    result = jailed(isolation, tmp_path, code)
    assert result.stdout.split() == ["0", "0", "1"], result.stderr
    remount_rw = ("import ctypes, sys\n"
                  "libc = ctypes.CDLL(None, use_errno=True)\n"
                  "sys.exit(libc.mount(None, b'/', None, 32 | 4096, None) != 0)\n")
    assert jailed(isolation, tmp_path, remount_rw).returncode == 1
    # Control: with capabilities kept, the same remount succeeds (inside its namespace).
    with_caps = Isolation(mount_namespace=True, readonly_filesystem=True)
    assert jailed(with_caps, tmp_path, remount_rw).returncode == 0


def test_the_pid_namespace_hides_the_host(available: Isolation, tmp_path: Path) -> None:
    """Inside the PID namespace only the jail's own processes exist."""
    isolation = only(available, pid_namespace=True, mount_namespace=True)
    code = ("import os\n"
            "print(os.getpid(), sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n")
    result = jailed(isolation, tmp_path, code)
    pid, _, visible = result.stdout.partition(" ")
    assert pid == "2" and visible.strip() == "[1, 2]", result.stderr


def test_a_signal_death_is_reported_through_the_namespace_init(available: Isolation,
                                                                tmp_path: Path) -> None:
    """The init reports a child killed by signal N as exit status 128 + N."""
    isolation = only(available, pid_namespace=True, mount_namespace=True)
    code = "import os, signal\nos.kill(os.getpid(), signal.SIGXCPU)\n"
    result = jailed(isolation, tmp_path, code)
    assert result.returncode == 128 + 24


def test_no_layers_means_no_prefix(tmp_path: Path) -> None:
    """With nothing available the command runs as it is."""
    assert jail_command(Isolation(), str(tmp_path)) == []


def test_the_private_root_shows_only_the_interpreter_the_code_and_the_tmp_dir(
        available: Isolation, tmp_path: Path) -> None:
    """In the private root, files next to the tmp dir, /etc/shadow and device nodes are gone."""
    isolation = only(available, mount_namespace=True, readonly_filesystem=True,
                     private_root=True)
    inner = tmp_path / "jail"
    inner.mkdir(mode=0o700)
    (tmp_path / "secret").write_text("state")
    code = ("import os, sys\n"
            "print(sorted(os.listdir('/dev')), os.path.exists('/etc/shadow'),\n"
            "      os.path.exists(sys.argv[1]), os.listdir(os.path.dirname(sys.argv[2])))\n")
    result = jailed(isolation, inner, code, str(tmp_path / "secret"), str(inner))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "['fd', 'null', 'urandom', 'zero'] False False ['jail']"


def test_a_read_path_of_slash_is_refused(available: Isolation, tmp_path: Path) -> None:
    """Naming / as a read path would expose the whole host: the jail refuses to start."""
    isolation = only(available, mount_namespace=True, readonly_filesystem=True,
                     private_root=True)
    command = [*jail_command(isolation, str(tmp_path), read_paths=["/"]), sys.executable,
               "-I", "-c", "print('ran')"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=tmp_path,
                            check=False, start_new_session=True)
    assert result.returncode == JAIL_FAILED and "ran" not in result.stdout
    assert "whole root file system" in result.stderr


def test_the_jailed_process_runs_as_the_shadow_user_without_groups(available: Isolation,
                                                                   tmp_path: Path) -> None:
    """With unprivileged_user the command runs as the shadow user, no groups, in its own userns."""
    isolation = only(available, mount_namespace=True, readonly_filesystem=True,
                     private_root=True, capabilities_dropped=True, unprivileged_user=True)
    user = jail_user(isolation)
    assert user is not None
    os.chown(tmp_path, *user)
    code = ("import os\n"
            "print(os.getuid(), os.getgid(), os.getgroups(),\n"
            "      len(open('/proc/self/uid_map').read().splitlines()))\n")
    result = jailed(isolation, tmp_path, code)
    assert result.stdout.split() == [str(user[0]), str(user[1]), "[]", "2"], result.stderr


def test_seccomp_denies_sockets_and_namespaces_with_eperm(available: Isolation,
                                                          tmp_path: Path) -> None:
    """Under the filter socket() and unshare() fail with EPERM; threads and files still work."""
    isolation = only(available, seccomp=True)
    code = ("import ctypes, errno, os, socket, threading\n"
            "thread = threading.Thread(target=print, args=('thread ran',))\n"
            "thread.start()\n"
            "thread.join()\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "try:\n"
            "    socket.socket()\n"
            "except PermissionError:\n"
            "    print('socket refused')\n"
            "print('unshare', libc.unshare(0x10000000), errno.errorcode[ctypes.get_errno()])\n"
            "print('files work', len(os.listdir('.')) >= 0)\n")
    result = jailed(isolation, tmp_path, code)
    assert result.stdout.splitlines() == ["thread ran", "socket refused", "unshare -1 EPERM",
                                          "files work True"], result.stderr
