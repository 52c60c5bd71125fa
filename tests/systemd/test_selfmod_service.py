"""Tests for systemd/selfmod.service, checked by systemd's own analyser."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tooling import ensure_tool

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "selfmod.service"
EXEC_START = ("/opt/selfmod/venv/bin/selfmod run --config /etc/selfmod/selfmod.yaml "
              "--state-dir /var/lib/selfmod")
MAX_EXPOSURE = 2.0


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    """Path of systemd-analyze, installed from the Debian package if it is missing."""
    return ensure_tool("systemd-analyze", "systemd")


def _directives(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; systemd allows a key more than once."""
    section, found = "", []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        found.append((section, key.strip(), value.strip()))
    return found


def _service(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for section, key, value in _directives(text):
        if section == "Service":
            values.setdefault(key, []).append(value)
    return values


def _runnable_copy(text: str, directory: Path) -> Path:
    """The unit with ExecStart's binary swapped for one that exists on this machine.

    verify fails a unit whose ExecStart binary is missing, and /opt/selfmod only
    exists on an installed host; everything else in the unit stays as shipped.
    """
    selfmod = Path(sys.executable).with_name("selfmod")
    binary = str(selfmod) if selfmod.exists() else "/bin/true"
    copied, count = re.subn(r"^ExecStart=/opt/selfmod/venv/bin/selfmod\b",
                            f"ExecStart={binary}", text, flags=re.MULTILINE)
    assert count == 1, "ExecStart no longer starts /opt/selfmod/venv/bin/selfmod"
    path = directory / UNIT.name  # verify wants the file to carry the unit's name
    path.write_text(copied)
    return path


def _verify(systemd_analyze: str, unit: Path) -> tuple[int, list[str]]:
    """Exit status of `systemd-analyze verify` and its lines that concern this unit."""
    result = subprocess.run(
        [systemd_analyze, "verify", "--man=false", "--generators=false", str(unit)],
        capture_output=True, text=True, timeout=60, check=False)
    lines = (result.stdout + result.stderr).splitlines()
    return result.returncode, [line for line in lines if unit.name in line]


def test_unit_passes_systemd_analyze_verify(systemd_analyze: str, tmp_path: Path) -> None:
    """verify accepts the unit with no warning about any of its directives."""
    status, complaints = _verify(systemd_analyze, _runnable_copy(UNIT.read_text(), tmp_path))
    assert complaints == []
    assert status == 0


def test_verify_check_catches_a_bad_directive(systemd_analyze: str, tmp_path: Path) -> None:
    """The verify check is not blind: a misspelt key and a bad value are reported."""
    broken = UNIT.read_text().replace("[Service]\n",
                                      "[Service]\nProtectSystm=strict\nRestartSec=soon\n")
    _, complaints = _verify(systemd_analyze, _runnable_copy(broken, tmp_path))
    assert any("ProtectSystm" in line for line in complaints), complaints
    assert any("soon" in line for line in complaints), complaints


def test_exposure_level_is_at_most_2(systemd_analyze: str) -> None:
    """systemd-analyze security rates the sandboxing at an exposure of 2.0 or less."""
    result = subprocess.run(
        [systemd_analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True, text=True, timeout=60, check=False)
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", output)
    assert match is not None, output
    assert float(match.group(1)) <= MAX_EXPOSURE, output


def test_unit_keeps_its_contract_with_the_daemon() -> None:
    """The unit starts the daemon the documented way and expects sd_notify and watchdog pings."""
    service = _service(UNIT.read_text())
    assert service["ExecStart"] == [EXEC_START]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["WatchdogSec"] == ["30"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["KillMode"] == ["mixed"]
    assert service["StateDirectory"] == ["selfmod"]
    assert service["StateDirectoryMode"] == ["0700"]


def test_sandbox_can_still_create_its_jail() -> None:
    """Hardening leaves the jail its namespaces and no capabilities to the daemon."""
    service = _service(UNIT.read_text())
    assert set(service["RestrictNamespaces"][0].split()) == {"user", "net", "mnt", "pid"}
    assert service["CapabilityBoundingSet"] == [""]
    assert service["AmbientCapabilities"] == [""]
    assert service["ProtectSystem"] == ["strict"]
    assert "ReadWritePaths" not in service  # the state directory is the only writable path
    # unshare is in @process, which @system-service includes; @privileged is denied.
    assert service["SystemCallFilter"][0] == "@system-service"


# What the sandbox calls to start a shadow: `unshare` (user, net, mount, pid),
# rlimits, a new session and a process-group kill; then the jail's init builds a
# private root (mount, umount2, pivot_root) and installs its filter (seccomp).
SANDBOX_SYSCALLS = {"unshare", "clone", "clone3", "execve", "prlimit64", "setrlimit", "setsid",
                    "kill", "wait4", "pipe2", "openat", "write", "socket", "sendto", "mount",
                    "umount2", "pivot_root", "seccomp", "prctl"}


def _syscalls(systemd_analyze: str, group: str) -> set[str]:
    """The system calls in a systemd filter group, nested groups expanded."""
    result = subprocess.run([systemd_analyze, "syscall-filter", "--no-pager", group],
                            capture_output=True, text=True, timeout=60, check=True)
    names: set[str] = set()
    for line in result.stdout.splitlines()[1:]:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        names |= _syscalls(systemd_analyze, entry) if entry.startswith("@") else {entry}
    return names


def test_syscall_filter_admits_what_the_sandbox_calls(systemd_analyze: str) -> None:
    """The unit's allow list minus its deny list still holds every call the sandbox makes."""
    allowed: set[str] = set()
    for value in _service(UNIT.read_text())["SystemCallFilter"]:
        deny = value.startswith("~")
        groups = set().union(*(_syscalls(systemd_analyze, g) if g.startswith("@") else {g}
                               for g in value.lstrip("~").split()))
        allowed = allowed - groups if deny else allowed | groups
    assert SANDBOX_SYSCALLS - allowed == set()
