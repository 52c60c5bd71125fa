"""Daemon RSS and CPU overhead: a process hosting the demo with the daemon vs the demo alone.

Two child processes run the same harness, one after the other, never side by
side (the machine has two cores):

- ``demo``: the demo as ``config/selfmod.yaml`` hosts it (seed, workers,
  oracle rate), alone;
- ``daemon``: the full daemon (:class:`daemon.lifecycle.Daemon`, the same
  configuration, metrics on a free loopback port) hosting that demo, started
  on a copy of the converged state directory so that it restores the accepted
  versions, and told which targets the batch run already tried (what a daemon
  that kept running after convergence remembers), so it goes idle.

Each child warms up, then measures over the same window: RSS and USS of its
own process (psutil), the CPU seconds of every thread (from
``/proc/self/task``), and the demo's throughput. The daemon's CPU overhead is
the CPU time of all threads that are not demo workers or the harness, per
second of wall time, while converged and idle. RSS overhead is the daemon
child's RSS minus the demo child's; the batch run's peak RSS while it
synthesised (sampled by :func:`bench._common.run_daemon`) is reported next to
it, with the shadows' peak apart (they are separate, short-lived processes).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench._common import (
    CONFIG,
    copy_state,
    demo_converged,
    demo_options,
    metric,
    progress,
    python_env,
    result,
    workdir,
    write_result,
)

NAME = "resources"
TARGET_MB = 80.0
WARMUP_SECONDS = 5.0
WINDOW_SECONDS = 20.0
IDLE_TIMEOUT_SECONDS = 120.0
IDLE_HOLD_SECONDS = 5.0
MB = 1024 * 1024


def _thread_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of every thread of this process, by native thread id."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # the thread ended
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def _names() -> dict[int, str]:
    return {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}


def _window(items: Any, workers_prefix: str) -> dict[str, Any]:
    """Measure this process over WINDOW_SECONDS: threads' CPU, RSS, the workload's items."""
    me = psutil.Process()
    names = _names()
    cpu0, items0, t0 = _thread_cpu(), items(), time.monotonic()
    rss = []
    end = t0 + WINDOW_SECONDS
    while time.monotonic() < end:
        time.sleep(0.5)
        rss.append(me.memory_info().rss)
    cpu1, items1, t1 = _thread_cpu(), items(), time.monotonic()
    names.update(_names())
    wall = t1 - t0
    by_role = {"workers": 0.0, "harness": 0.0, "daemon": 0.0}
    threads: dict[str, float] = {}
    for tid, seconds in cpu1.items():
        used = seconds - cpu0.get(tid, 0.0)
        name = names.get(tid, f"native-{tid}")
        threads[name] = round(threads.get(name, 0.0) + used, 3)
        if name.startswith(workers_prefix):
            role = "workers"
        elif tid == threading.main_thread().native_id:
            role = "harness"
        else:
            role = "daemon"
        by_role[role] += used
    full = me.memory_full_info()
    return {"wall_seconds": round(wall, 3), "throughput": (items1 - items0) / wall,
            "rss_bytes": int(sorted(rss)[len(rss) // 2]), "rss_max_bytes": max(rss),
            "uss_bytes": full.uss, "cpu_seconds": {k: round(v, 3) for k, v in by_role.items()},
            "cpu_share": {k: round(v / wall, 5) for k, v in by_role.items()},
            "threads": threads}


def child_demo(out: Path) -> None:
    """The demo alone, as the daemon would host it."""
    from daemon.config import load_config
    from demo.workload import DemoWorkload

    seed, workers, oracle_every = demo_options(load_config(CONFIG))
    workload = DemoWorkload(seed=seed, workers=workers, oracle_every=oracle_every)
    workload.start()
    try:
        time.sleep(WARMUP_SECONDS)
        data = _window(lambda: workload.snapshot().items, "demo-worker-")
    finally:
        workload.stop()
        workload.join(10.0)
    out.write_text(json.dumps(data))


def child_daemon(out: Path, state_dir: Path, report: Path) -> None:
    """The daemon hosting the demo, restored from converged state and idle."""
    from daemon import logs
    from daemon.config import load_config
    from daemon.lifecycle import Daemon, RunOptions

    config = load_config(CONFIG).with_overrides(state_dir=str(state_dir),
                                                **{"metrics.port": 0})
    logs.configure("json", "info")
    daemon = Daemon(config, RunOptions())
    tried = json.loads(report.read_text())["cycles"]
    runner = threading.Thread(target=daemon.run, name="selfmod-main", daemon=True)
    started = time.monotonic()
    runner.start()
    idle_at = None
    try:
        while daemon.workload is None or daemon.profiler is None:  # start() still running
            time.sleep(0.1)
        # what the batch run had tried, at the versions now restored: a converged daemon
        # remembers this and does not start those cycles again
        active = daemon.swapper.active()
        for cycle in tried:
            target = cycle["target"]
            version = active[target].version if target in active else "original"
            daemon.selection.tried[(target, version)] = "converged"
        time.sleep(WARMUP_SECONDS)
        quiet_since: float | None = None
        while time.monotonic() - started < IDLE_TIMEOUT_SECONDS:
            now = time.monotonic()
            if daemon.pick() is None and daemon.profiler.window_samples() > 0:
                quiet_since = quiet_since if quiet_since is not None else now
                if now - quiet_since >= IDLE_HOLD_SECONDS:
                    idle_at = now - started
                    break
            else:
                quiet_since = None
            time.sleep(0.5)

        def items() -> int:
            stats = daemon.workload.stats() if daemon.workload else None
            return stats.items if stats else 0

        data = _window(items, "demo-worker-")
        data.update(idle=idle_at is not None, idle_after_seconds=idle_at,
                    cycles_run=len(daemon.cycles),
                    active=sorted(daemon.swapper.active()),
                    peak_rss_bytes=psutil.Process().memory_info().rss,
                    maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    finally:
        daemon.request_stop("benchmark done")
        runner.join(60.0)
    out.write_text(json.dumps(data))


def _run_child(mode: str, *args: str) -> dict[str, Any]:
    out = workdir() / f"resources-{mode}.json"
    log = workdir() / f"resources-{mode}.log"
    code = (f"import sys, pathlib, bench.resources as r; "
            f"r.child_{mode}(*map(pathlib.Path, sys.argv[1:]))")
    progress(NAME, f"child '{mode}' (log {log})")
    with log.open("w") as stream:
        subprocess.run([sys.executable, "-c", code, str(out), *args], env=python_env(),
                       stdout=stream, stderr=subprocess.STDOUT, check=True,
                       timeout=IDLE_TIMEOUT_SECONDS + WINDOW_SECONDS + 120)
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def main() -> int:
    started, load_before = time.monotonic(), os.getloadavg()
    state, report = demo_converged(NAME)
    report_path = workdir() / "resources-batch-report.json"
    report_path.write_text(json.dumps(report))
    copy = workdir() / "resources-state"
    if copy.exists():
        shutil.rmtree(copy)
    copy_state(state, copy)
    demo = _run_child("demo")
    daemon = _run_child("daemon", str(copy), str(report_path))
    rss_overhead = (daemon["rss_bytes"] - demo["rss_bytes"]) / MB
    uss_overhead = (daemon["uss_bytes"] - demo["uss_bytes"]) / MB
    peak = report.get("peak_rss_bytes")
    peak_overhead = (peak - demo["rss_bytes"]) / MB if peak else None
    cpu_share = daemon["cpu_share"]["daemon"]
    metrics = [
        metric("rss_overhead_idle", round(rss_overhead, 1), "MB", target=f"<= {TARGET_MB:g}",
               met=rss_overhead <= TARGET_MB, uss_overhead_mb=round(uss_overhead, 1),
               demo_rss_mb=round(demo["rss_bytes"] / MB, 1),
               daemon_rss_mb=round(daemon["rss_bytes"] / MB, 1)),
        metric("rss_overhead_peak_synthesis", round(peak_overhead, 1) if peak_overhead else None,
               "MB", target=f"<= {TARGET_MB:g}",
               met=peak_overhead <= TARGET_MB if peak_overhead is not None else None,
               shadow_peak_mb=round(report.get("peak_children_rss_bytes", 0) / MB, 1),
               note="batch run's peak RSS (sampled every 0.5 s) minus the demo alone"),
        metric("cpu_overhead_idle", round(cpu_share, 5), "cores",
               cpu_seconds=daemon["cpu_seconds"]["daemon"], window_seconds=WINDOW_SECONDS,
               note="CPU seconds of the daemon's threads per wall second, converged and idle"),
        metric("demo_throughput_ratio_idle", round(daemon["throughput"] / demo["throughput"], 3)
               if demo["throughput"] else None, "x",
               note="daemon-hosted (converged versions) vs demo alone (original code)"),
    ]
    details = {"demo": demo, "daemon": daemon,
               "batch_run": {"peak_rss_bytes": peak,
                             "peak_children_rss_bytes": report.get("peak_children_rss_bytes"),
                             "wall_seconds": report.get("wall_seconds"),
                             "compute": report.get("compute")}}
    params = {"warmup_seconds": WARMUP_SECONDS, "window_seconds": WINDOW_SECONDS,
              "idle_timeout_seconds": IDLE_TIMEOUT_SECONDS, "idle_hold_seconds": IDLE_HOLD_SECONDS,
              "config": "config/selfmod.yaml (metrics port 0)"}
    data = result(NAME, "daemon RSS and CPU overhead vs the demo alone", metrics, params, details,
                  started=started, load_before=load_before)
    path = write_result(data)
    progress(NAME, f"RSS +{rss_overhead:.1f} MB idle (peak synthesis "
                   f"{'?' if peak_overhead is None else f'+{peak_overhead:.1f}'} MB), daemon CPU "
                   f"{cpu_share:.2%} of a core idle -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
