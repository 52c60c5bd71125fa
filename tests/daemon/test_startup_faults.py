"""Start-up faults of `selfmod run` are one line naming the setting and the fix, exit code 2."""

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.daemon.live import SELFMOD

APP = "def main(stop):\n    stop.wait()\n"


def _run(tmp_path: Path, *args: str, cwd: Path | None = None) -> str:
    """Run `selfmod run` hosting a small app; assert exit 2 and no traceback; the one line."""
    (tmp_path / "quiet.py").write_text(APP)
    proc = subprocess.run([*SELFMOD, "run", "--app", "quiet:main", *args], cwd=cwd or tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "daemon_started" not in proc.stdout
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("selfmod: error: ")
    return line.removeprefix("selfmod: error: ")


def test_a_metrics_port_in_use_names_the_port_and_the_way_out(tmp_path):
    """A metrics port already taken is refused with the port, the flag and `--metrics-port 0`."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _run(tmp_path, "--state-dir", str(tmp_path / "s"), "--metrics-port", str(port))
    assert f"metrics port {port} on 127.0.0.1 is in use" in line
    assert "--metrics-port 0 to pick a free one" in line and "metrics.port" in line


def test_a_metrics_port_out_of_range_is_refused(tmp_path):
    """`--metrics-port 99999` is refused before anything starts, naming the valid range."""
    line = _run(tmp_path, "--state-dir", str(tmp_path / "s"), "--metrics-port", "99999")
    assert line == "--metrics-port 99999 is not a TCP port; give 1-65535, or 0 to pick a free one"
    assert not (tmp_path / "s").exists()


def test_an_unreadable_model_api_key_file_is_refused_before_start(tmp_path):
    """With the llm proposer, an api_key_file that cannot be read is one line naming it."""
    config = tmp_path / "selfmod.yaml"
    config.write_text("version: 1\nproposer: llm\n"
                      f"llm: {{api_key_file: '{tmp_path / 'missing.key'}'}}\n")
    line = _run(tmp_path, "--config", str(config), "--state-dir", str(tmp_path / "s"),
                "--metrics-port", "0")
    assert f"llm.api_key_file {tmp_path / 'missing.key'} cannot be read" in line
    assert not (tmp_path / "s" / "audit.log").exists()


def test_a_state_dir_that_is_a_file_is_refused(tmp_path):
    """A --state-dir naming a file says it is a file and how to point elsewhere."""
    (tmp_path / "state").write_text("not a directory")
    line = _run(tmp_path, "--state-dir", "state", "--metrics-port", "0")
    assert f"state directory {tmp_path / 'state'} is a file" in line and "--state-dir" in line


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("unshare") is None,
                    reason="root writes any directory; a read-only mount needs unshare")
def test_a_state_dir_that_is_not_writable_names_the_uid(tmp_path):
    """A state directory this user cannot write is refused, naming the uid and the fix."""
    state = tmp_path / "state"
    state.mkdir()
    if os.geteuid() != 0:
        state.chmod(0o500)
        line = _run(tmp_path, "--state-dir", str(state), "--metrics-port", "0")
    else:  # root passes every permission check: make the directory read-only by a mount
        (tmp_path / "quiet.py").write_text(APP)
        script = (f"mount --bind {state} {state} && mount -o remount,bind,ro {state} && "
                  f"exec {' '.join(SELFMOD)} run --app quiet:main --state-dir {state} "
                  "--metrics-port 0")
        proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
        if "mount" in proc.stderr and proc.returncode != 2:
            pytest.skip(f"no private read-only mount here: {proc.stderr.strip()}")
        assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
        [line] = proc.stderr.strip().splitlines()
    assert f"state directory {state} is not writable by uid {os.geteuid()}" in line
    assert "--state-dir" in line


@pytest.mark.parametrize("glob", ["mod.func", "mod:["])
def test_a_malformed_scope_is_refused_like_in_the_policy(tmp_path, glob):
    """A malformed --scope is one line, exit 2, with the message the policy gives the same glob."""
    line = _run(tmp_path, "--state-dir", str(tmp_path / "s"), "--metrics-port", "0",
                "--scope", glob)
    policy = tmp_path / "envelope.yaml"
    policy.write_text(f"version: 1\nscope:\n  include: [{glob!r}]\n")
    check = subprocess.run([*SELFMOD, "envelope", "check", str(policy)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 1
    problem = line.removeprefix("--scope: ")
    assert problem.startswith(repr(glob)) and problem in check.stderr
    assert not (tmp_path / "s").exists()
