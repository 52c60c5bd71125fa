"""The suite's own guards: a test that leaks a thread or a child process fails."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUARDS = "from tests.conftest import no_leaked_children, no_leaked_threads  # noqa: F401\n"


@pytest.fixture
def guarded(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A scratch test directory that uses the suite's conftest guards."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest(GUARDS)
    return pytester


def test_a_leaked_thread_fails_the_test(guarded: pytest.Pytester) -> None:
    """A test that starts a thread and leaves it running is reported with the thread's name."""
    guarded.makepyfile(
        "import threading, time\n"
        "def test_leaks():\n"
        "    threading.Thread(target=time.sleep, args=(60,), name='leaky', daemon=True).start()\n"
        "def test_joins():\n"
        "    t = threading.Thread(target=time.sleep, args=(0.1,))\n"
        "    t.start()\n")
    result = guarded.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*left threads running*leaky*"])


def test_a_leaked_child_process_fails_the_test(guarded: pytest.Pytester) -> None:
    """A test that leaves a subprocess running is reported with its command (it ends by itself)."""
    guarded.makepyfile(
        "import subprocess, sys\n"
        "def test_leaks():\n"
        "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(8)'])\n"
        "def test_waits():\n"
        "    subprocess.run([sys.executable, '-c', 'pass'], check=True)\n")
    result = guarded.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*left child processes behind*time.sleep(8)*"])
