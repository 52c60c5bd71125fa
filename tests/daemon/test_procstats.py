"""Tests for daemon/procstats.py against real child processes."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
from prometheus_client import CollectorRegistry, generate_latest

from daemon.procstats import SHADOW_MODULE, ProcessTreeCollector, sample

# Sleeps until killed; the arguments after the code make its command line look like a
# shadow's (``-m invariants.shadow``) or like the jail wrapper's that holds one.
SLEEPER = "import time\nwhile True: time.sleep(1)"
SHADOW = [sys.executable, "-c", SLEEPER, "-m", SHADOW_MODULE]
WRAPPER = [sys.executable, "-c", SLEEPER, "-m", "envelope.isolation", "init", "--",
           sys.executable, "-m", SHADOW_MODULE]
# Burns CPU until the kernel has charged it 0.3 s, then exits.
BURNER = "import time\nwhile time.process_time() < 0.3: pass"


def _wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def test_counts_shadows_and_their_resources_but_not_other_children() -> None:
    """A shadow counts once, with its jail's memory; an unrelated child counts not at all."""
    me = psutil.Process()
    before = sample(me)
    procs = [subprocess.Popen(cmd) for cmd in (SHADOW, WRAPPER, [sys.executable, "-c", SLEEPER])]
    try:
        for proc in procs:  # until each has exec'd the interpreter with its arguments
            _wait_until(lambda p=proc: "-c" in psutil.Process(p.pid).cmdline())
        during = sample(me)
        assert during.shadows == before.shadows + 1
        assert during.shadow_rss_bytes >= before.shadow_rss_bytes + _rss(procs[0].pid) \
            + _rss(procs[1].pid) - 4 * 2**20  # both may have grown a little between readings
        assert during.shadow_open_fds > before.shadow_open_fds
        assert during.threads >= 1
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert sample(me).shadows == before.shadows


def test_cpu_of_finished_children_is_kept() -> None:
    """CPU a child used is still counted after it exited and was reaped."""
    me = psutil.Process()
    before = sample(me).child_cpu_seconds
    subprocess.run([sys.executable, "-c", BURNER], check=True, timeout=120)
    assert sample(me).child_cpu_seconds >= before + 0.25  # the kernel counts in ticks


def test_collector_exposes_the_metrics_on_its_registry() -> None:
    """Every scrape of the registry reads the process tree afresh."""
    registry = CollectorRegistry()
    ProcessTreeCollector(registry=registry)
    text = generate_latest(registry).decode()
    for name in ("selfmod_daemon_threads", "selfmod_shadow_processes",
                 "selfmod_shadow_resident_memory_bytes", "selfmod_shadow_open_fds",
                 "selfmod_child_cpu_seconds_total"):
        assert f"\n{name} " in text or text.startswith(f"{name} "), name
    shadow = subprocess.Popen(SHADOW)
    try:
        _wait_until(lambda: registry.get_sample_value("selfmod_shadow_processes") == 1)
    finally:
        shadow.kill()
        shadow.wait()
    assert registry.get_sample_value("selfmod_shadow_processes") == 0
