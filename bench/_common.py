"""What every benchmark shares: the result file, the machine, paired statistics, the daemon.

Every benchmark writes one JSON file per measured item to ``bench/results/``,
built by :func:`result` and written by :func:`write_result`::

    {"format": 1, "name": "profiler_overhead", "description": "...",
     "metrics": [{"metric": "throughput_loss", "value": 0.004, "unit": "ratio",
                  "target": "<= 0.02", "met": true, "ci": [-0.003, 0.011]}],
     "parameters": {...}, "machine": {...}, "details": {...}, "seconds": 61.2}

``metrics`` holds the numbers the summary table shows; ``target`` is the
issue's target as text (``null`` for a number that is reported only) and
``met`` whether the measured value reaches it (``null`` when there is no
target). ``machine`` records the load average before and after, because these
machines are shared and a busy neighbour shows up in every number.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# History of RESULT_FORMAT:
#   1 — first format.
RESULT_FORMAT = 1

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CONFIG = ROOT / "config" / "selfmod.yaml"
# bench/__main__.py sets this to one temporary directory for the whole run, so that the
# demo's converged state directory is built once and reused by the benchmarks that need it
WORKDIR_ENV = "SELFMOD_BENCH_WORKDIR"
# a load average above this share of the cores means a neighbour competed for the CPU
_BUSY_LOAD_PER_CORE = 0.5


def progress(name: str, message: str) -> None:
    """One line of progress on stderr, so that long benchmarks show they are alive."""
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {message}", file=sys.stderr, flush=True)


def machine(load_before: tuple[float, float, float] | None = None) -> dict[str, Any]:
    """Cores, interpreter and load: what a number measured here depends on."""
    cores = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    load_now = os.getloadavg()
    before = load_before if load_before is not None else load_now
    busy = max(before[0], load_now[0]) > _BUSY_LOAD_PER_CORE * usable
    return {
        "cores": cores,
        "usable_cores": usable,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_before": [round(x, 2) for x in before],
        "loadavg_after": [round(x, 2) for x in load_now],
        "shared_machine": busy,
        "note": ("load average above half the cores: measured on a shared, busy machine"
                 if busy else ""),
    }


def metric(name: str, value: float | int | None, unit: str, *, target: str | None = None,
           met: bool | None = None, **extra: Any) -> dict[str, Any]:
    """One row of the summary table."""
    return {"metric": name, "value": value, "unit": unit, "target": target, "met": met,
            **extra}


def result(name: str, description: str, metrics: list[dict[str, Any]],
           parameters: dict[str, Any], details: dict[str, Any], *, started: float,
           load_before: tuple[float, float, float]) -> dict[str, Any]:
    return {"format": RESULT_FORMAT, "name": name, "description": description,
            "metrics": metrics, "parameters": parameters, "details": details,
            "machine": machine(load_before), "finished_at": time.time(),
            "seconds": round(time.monotonic() - started, 1)}


def write_result(data: dict[str, Any], results: Path = RESULTS) -> Path:
    """Write ``<results>/<name>.json`` atomically; returns its path."""
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{data['name']}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


# -- statistics -------------------------------------------------------------------------

def pyplot() -> Any | None:
    """matplotlib's pyplot on the file-only Agg backend, or None without the `bench` extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_figure(plt: Any, fig: Any, path: os.PathLike[str]) -> bool:
    """Lay out ``fig``, write it to ``path`` and free it; True, for the plot's caller."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
    """BCa bootstrap interval of the mean (few pairs: a t-interval would assume more).

    Where BCa is not defined (every value equal, or nearly) the percentile interval
    stands in. scipy is imported here, not at the top, because every benchmark
    imports this module, including the children whose memory bench/resources.py
    measures.
    """
    if len(values) < 2:
        v = values[0] if values else float("nan")
        return v, v
    import warnings

    import numpy as np
    from scipy import stats

    for method in ("BCa", "percentile"):
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            interval = stats.bootstrap((np.asarray(values, dtype=float),), np.mean,
                                       n_resamples=resamples, confidence_level=confidence,
                                       method=method, rng=np.random.default_rng(seed),
                                       vectorized=True).confidence_interval
        low, high = float(interval.low), float(interval.high)
        if np.isfinite(low) and np.isfinite(high):
            break
    return low, high


def paired_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """``b[i] / a[i]`` for each pair."""
    return [y / x for x, y in zip(a, b, strict=True)]


# -- the daemon -------------------------------------------------------------------------

def python_env(extra_path: Sequence[Path] = ()) -> dict[str, str]:
    """The environment for a child Python that must import this checkout (and ``extra_path``)."""
    env = dict(os.environ)
    parts = [str(p) for p in (*extra_path, ROOT)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.pop("PYTHONSTARTUP", None)
    return env


def selfmod_command(*args: str) -> list[str]:
    """``selfmod ARGS`` run by this interpreter from this checkout (not whatever is on PATH)."""
    return [sys.executable, "-c", "import sys; from daemon.cli import main; sys.exit(main())",
            *args]


def run_daemon(name: str, state_dir: Path, report: Path, log: Path, *,
               extra: Sequence[str] = (), extra_path: Sequence[Path] = (),
               timeout: float = 240.0, cwd: Path | None = None) -> dict[str, Any]:
    """``selfmod run --exit-when-idle`` to completion (SIGTERM at ``timeout``); returns the report.

    The daemon writes its report on SIGTERM too, so a run cut short still says
    what it did; ``timed_out`` is added to the returned report.
    """
    cmd = selfmod_command("run", "--config", str(CONFIG), "--exit-when-idle",
                          "--report", str(report), "--state-dir", str(state_dir),
                          "--metrics-port", "0", *extra)
    progress(name, f"selfmod run --exit-when-idle (state {state_dir}, log {log})")
    started = time.monotonic()
    timed_out = False
    peak = {"rss": 0, "children_rss": 0}
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd or ROOT, env=python_env(extra_path),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            last = started
            while proc.poll() is None:
                time.sleep(0.5)
                _track_rss(proc.pid, peak)
                now = time.monotonic()
                if now - started > timeout:
                    timed_out = True
                    progress(name, f"daemon still running after {timeout:.0f}s: SIGTERM")
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(60)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
                    break
                if now - last >= 15:
                    last = now
                    progress(name, f"daemon running {now - started:.0f}s, "
                                   f"{_count(log, 'cycle_finished')} cycles so far")
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if not report.exists():
        # the scratch directory goes at the end of the run: show the log's end here
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"the daemon wrote no report (exit {proc.returncode}); "
                           f"the end of {log}:\n{tail}")
    data: dict[str, Any] = json.loads(report.read_text())
    data["timed_out"] = timed_out
    data["returncode"] = proc.returncode
    data["wall_seconds"] = round(time.monotonic() - started, 1)
    data["peak_rss_bytes"] = peak["rss"]  # the daemon process, sampled every 0.5 s
    data["peak_children_rss_bytes"] = peak["children_rss"]  # its shadows, summed
    progress(name, f"daemon done in {data['wall_seconds']}s: {data['exit_reason']}, "
                   f"{len(data['cycles'])} cycles, {len(data['active'])} active versions")
    return data


def _track_rss(pid: int, peak: dict[str, int]) -> None:
    import psutil

    try:
        process = psutil.Process(pid)
        peak["rss"] = max(peak["rss"], process.memory_info().rss)
        children = sum(c.memory_info().rss for c in process.children(recursive=True))
        peak["children_rss"] = max(peak["children_rss"], children)
    except psutil.Error:  # it ended, or a shadow ended between listing and reading
        pass


def _count(log: Path, word: str) -> int:
    try:
        return log.read_text(errors="replace").count(word)
    except OSError:
        return 0


def workdir() -> Path:
    """The run's shared scratch directory (a fresh one when a benchmark runs on its own)."""
    path = os.environ.get(WORKDIR_ENV)
    if path:
        return Path(path)
    made = Path(tempfile.mkdtemp(prefix="selfmod-bench-"))
    os.environ[WORKDIR_ENV] = str(made)
    return made


def demo_converged(name: str, *, timeout: float = 360.0) -> tuple[Path, dict[str, Any]]:
    """The demo's state directory after a batch run to convergence, and that run's report.

    Built once per ``make bench`` in the shared work directory; later callers get
    the same run. Callers that change state must copy the directory first. On a
    quiet two-core machine the demo converges in about two minutes; ``timeout``
    leaves room for a busy one (a run cut short says so: ``timed_out``).
    """
    base = workdir() / "demo"
    state, report, log = base / "state", base / "report.json", base / "daemon.log"
    done = base / "done.json"
    if done.exists():
        progress(name, f"reusing the converged demo state from this run ({state})")
        return state, json.loads(done.read_text())
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    data = run_daemon(name, state, report, log, timeout=timeout)
    done.write_text(json.dumps(data))
    return state, data


def copy_state(state: Path, dest: Path) -> Path:
    """A private copy of a state directory (without its lock or socket)."""
    shutil.copytree(state, dest, ignore=shutil.ignore_patterns("control.sock", "lock"))
    return dest


class Converged:
    """The active versions of a state directory, to swap in and out of this process.

    Installed with the daemon's own :class:`daemon.swap.SwapManager`; a version
    whose base hash differs from the code loaded here is skipped, as the
    daemon's restore would.
    """

    def __init__(self, state_dir: Path) -> None:
        from daemon.ledger import Ledger
        from daemon.swap import SwapManager
        from invariants.targets import sha256_text

        ledger = Ledger.reader(state_dir)
        self.swapper = SwapManager()
        self.codes: dict[str, tuple[str, Any]] = {}
        self.skipped: dict[str, str] = {}
        self.origins: dict[str, str] = {}
        for record in ledger.active_versions():
            version = ledger.active_version(record.target)
            if version is None:
                continue
            base = sha256_text(self.swapper.original_source(version.target))
            if base != version.base_sha:  # what restore would refuse too
                self.skipped[version.target] = "stale: base hash differs"
                continue
            code = self.swapper.compile(version.target, version.source, version.id)
            self.codes[version.target] = (version.id, code)
            self.origins[version.target] = version.origin

    def install(self) -> None:
        for target, (vid, code) in self.codes.items():
            self.swapper.install(target, vid, code)

    def rollback(self) -> None:
        self.swapper.rollback_all()


def demo_options(config: Any) -> tuple[int, int, int]:
    """(seed, workers, oracle_every) the daemon's config passes the demo app."""
    from demo.workload import DEFAULT_ORACLE_EVERY, DEFAULT_WORKERS

    options = config.workload.options
    return (int(options.get("seed", 0)), int(options.get("workers", DEFAULT_WORKERS)),
            int(options.get("oracle_every", DEFAULT_ORACLE_EVERY)))
