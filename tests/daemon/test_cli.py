"""The command line's manners: --version, and a reader that hangs up early."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

SELFMOD = [sys.executable, "-m", "daemon.cli"]


def test_version_names_the_installed_distribution() -> None:
    """`selfmod --version` prints the installed version and exits 0."""
    out = subprocess.run([*SELFMOD, "--version"], capture_output=True, text=True, timeout=60,
                         check=True)
    assert out.stdout.strip() == f"selfmod {version('selfmod')}"


def test_a_closed_pipe_is_a_quiet_exit() -> None:
    """Output into a pipe whose reader has gone (`... | head`) ends with status 0, no traceback."""
    proc = subprocess.Popen([*SELFMOD, "envelope", "schema"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader hangs up before anything is written
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_every_reading_command_refuses_a_missing_state_dir_the_same_way(tmp_path) -> None:
    """status, history, diff, rollback, export and audit verify name where they looked."""
    commands = [["status"], ["history"], ["diff", "abcd"], ["rollback", "abcd"],
                ["export", "--out", str(tmp_path / "out")], ["audit", "verify"]]
    for command in commands:
        out = subprocess.run([*SELFMOD, *command], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60, check=False)
        assert out.returncode == 1, (command, out.stdout)
        assert f"no state directory at {tmp_path / '.selfmod'}" in out.stderr, command
        assert "--state-dir" in out.stderr and "SELFMOD_STATE_DIR" in out.stderr


def test_the_state_dir_can_come_from_the_environment(tmp_path) -> None:
    """SELFMOD_STATE_DIR points the commands at a state directory like --state-dir does."""
    state = tmp_path / "elsewhere"
    state.mkdir()
    out = subprocess.run([*SELFMOD, "audit", "verify", "--json"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=False,
                         env={**os.environ, "SELFMOD_STATE_DIR": str(state)})
    assert out.returncode == 0, out.stderr
    assert '"records": 0' in out.stdout
