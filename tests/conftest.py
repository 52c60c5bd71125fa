"""Session-wide fixtures: the real vLLM CPU server (built into a cache outside the clone),
the isolation this machine gives shadow runs, and the checks, on every test, that it
leaves no child process and no thread behind."""

import contextlib
import threading
import time
from collections.abc import Iterator

import psutil
import pytest

from envelope.isolation import Isolation, probe_isolation
from tests.vllm_server import vllm_fixture

pytest_plugins = ["pytester"]

__all__ = ["isolation", "no_leaked_children", "no_leaked_threads", "vllm_fixture"]


@pytest.fixture(scope="session")
def isolation() -> Isolation:
    """What the sandbox can get here (namespaces, read-only mounts, dropped capabilities)."""
    return probe_isolation()


LEAK_GRACE_SECONDS = 5.0  # a thread or child told to stop may take a moment to end


@pytest.fixture(autouse=True)
def no_leaked_children() -> Iterator[None]:
    """Fails any test that leaves a child process (or zombie) of this process behind.

    Session-scoped servers are set up before this fixture, so their processes
    are in ``before``; anything a test starts must be gone (and reaped) at its end.
    """
    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}
    yield
    deadline = time.monotonic() + LEAK_GRACE_SECONDS
    while True:
        left = [child for child in me.children(recursive=True) if child.pid not in before]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    described = _describe(left)
    _kill(left)  # a failed test must not leave a daemon burning CPU for the rest of the run
    assert not left, f"the test left child processes behind: {described}"


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fails any test that leaves a thread of its own running after it ends."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + LEAK_GRACE_SECONDS
    left = []
    for thread in set(threading.enumerate()) - before:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            left.append(thread.name)
    assert not left, f"the test left threads running: {sorted(left)}"


def _kill(processes: list[psutil.Process]) -> None:
    """SIGTERM, then SIGKILL what is left, then reap: nothing outlives a failed test."""
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=5)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


def _describe(processes: list[psutil.Process]) -> str:
    out = []
    for process in processes:
        try:
            out.append(f"{process.pid} {' '.join(process.cmdline())[:120] or process.status()}")
        except psutil.Error:
            out.append(str(process.pid))
    return "; ".join(out)
