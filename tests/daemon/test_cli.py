"""The command line's manners: --version, and a reader that hangs up early."""

from __future__ import annotations

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
