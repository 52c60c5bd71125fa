"""Make sure a Debian-packaged tool that a test drives is installed.

Tests check the unit file, the alert rules and the scrape config with the real
tools (``systemd-analyze``, ``promtool``). On a fresh Debian machine the tool
may be missing; as root we install its package once (``apt-get update`` then
``apt-get install``), serialised by a file lock so parallel test processes do
not fight over dpkg. Only when installing is impossible (not root, no apt-get,
apt-get failing) is the test skipped, and the skip says what to run by hand.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_LOCK = Path(tempfile.gettempdir()) / "selfmod-tests-apt.lock"
_APT_TIMEOUT = 900
_updated = False


def _say(message: str) -> None:
    # Straight to the terminal: pytest captures sys.stderr, and a silent minute of
    # apt-get looks like a hung test.
    stream = sys.__stderr__ or sys.stderr
    print(f"[tests.tooling] {message}", file=stream, flush=True)


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    # DPkg::Lock::Timeout waits for an apt run outside this lock instead of failing.
    command = ["apt-get", "-o", "DPkg::Lock::Timeout=300", *args]
    _say("running " + " ".join(command))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=_APT_TIMEOUT, check=False)


def _tail(result: subprocess.CompletedProcess[str], lines: int = 15) -> str:
    return "\n".join((result.stdout + result.stderr).strip().splitlines()[-lines:])


def ensure_tool(command: str, package: str) -> str:
    """Return the path of ``command``, installing Debian ``package`` if needed, else skip."""
    global _updated
    found = shutil.which(command)
    if found is not None:
        return found
    by_hand = f"install it with `sudo apt-get install -y {package}`"
    if shutil.which("apt-get") is None:
        pytest.skip(f"{command} is not installed and this is not a Debian system: {by_hand}")
    if os.geteuid() != 0:
        pytest.skip(f"{command} is not installed and installing {package} needs root: {by_hand}")
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            found = shutil.which(command)  # another test process may have won the race
            if found is not None:
                return found
            _say(f"{command} not found; installing the Debian package {package!r}")
            if not _updated:
                result = _apt("update")
                if result.returncode != 0:
                    pytest.skip(f"`apt-get update` failed, so {package} cannot be installed "
                                f"({by_hand}):\n{_tail(result)}")
                _updated = True
            result = _apt("install", "-y", "--no-install-recommends", package)
            if result.returncode != 0:
                pytest.skip(f"`apt-get install {package}` failed ({by_hand}):\n{_tail(result)}")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    found = shutil.which(command)
    if found is None:
        pytest.fail(f"installed {package}, but it did not provide {command!r} on PATH")
    _say(f"installed {package}: {found}")
    return found
