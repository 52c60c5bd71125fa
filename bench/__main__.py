"""``python -m bench`` (``make bench``): run every benchmark, then write the summary table.

Every ``bench/*.py`` module that defines ``main()`` is a benchmark (modules
whose name starts with ``_`` are helpers). Each runs in its own interpreter, so
one benchmark's threads, imports and swapped code cannot bend the next one's
numbers, under a deadline; a benchmark that fails or overruns is recorded and
the run goes on. The JSON files written during the run are read back into
``bench/results/summary.json`` and printed as a table.

``python -m bench NAME...`` runs only the named benchmarks (the summary still
lists every result file present, marking those from earlier runs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import RESULTS, ROOT, WORKDIR_ENV, machine, python_env

BENCH = ROOT / "bench"
# the order benchmarks run in: those that build the converged demo state come first;
# anything not listed runs afterwards, alphabetically
ORDER = ("cycle_time", "throughput", "resources", "profiler_overhead", "unseen")
DEADLINE_SECONDS = 480.0
_MAIN = re.compile(r"^def main\(", re.MULTILINE)


def discover(bench: Path = BENCH) -> list[str]:
    """Names of the benchmark modules: ``bench/*.py`` with a top-level ``def main(``."""
    names = [p.stem for p in sorted(bench.glob("*.py"))
             if not p.stem.startswith("_") and _MAIN.search(p.read_text(errors="replace"))]
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(ORDER)), n))


def run_one(name: str, deadline: float) -> dict[str, Any]:
    """Run ``bench.<name>.main()`` in a child interpreter; how it ended."""
    print(f"\n=== {name} ===", file=sys.stderr, flush=True)
    started = time.monotonic()
    code = (f"import sys, bench.{name} as b; r = b.main(); "
            "sys.exit(r if type(r) is int else 0)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=python_env(),
                            start_new_session=True)
    try:
        returncode: int | None = proc.wait(deadline)
        status = "ok" if returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        returncode, status = proc.returncode, "timed_out"
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    seconds = round(time.monotonic() - started, 1)
    print(f"=== {name}: {status} in {seconds}s ===", file=sys.stderr, flush=True)
    return {"benchmark": name, "status": status, "returncode": returncode, "seconds": seconds}


def rows(results: Path, since: float) -> list[dict[str, Any]]:
    """One row per metric of every result file (files older than this run are marked stale)."""
    out: list[dict[str, Any]] = []
    for path in sorted(results.glob("*.json")):
        if path.name == "summary.json":
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            out.append({"file": path.name, "metric": "?", "value": None, "unit": "",
                        "target": None, "met": None, "error": f"unreadable: {exc}"})
            continue
        stale = path.stat().st_mtime < since
        for m in _metrics(data):
            out.append({"file": path.name, "name": data.get("name", path.stem),
                        "metric": m.get("metric") or m.get("name") or data.get("name", "?"),
                        "value": m.get("value"), "unit": m.get("unit", ""),
                        "target": m.get("target"), "met": m.get("met"), "stale": stale})
    return out


def _metrics(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows a result file reports, tolerating files that keep a single value at the top."""
    if isinstance(data.get("metrics"), list):
        return [m for m in data["metrics"] if isinstance(m, dict)]
    if "value" in data or "met" in data:
        return [data]
    return [{"metric": key, **value} for key, value in data.items()
            if isinstance(value, dict) and "met" in value]


def _merge_runs(previous: Path, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """This run's entries, plus the earlier summary's for benchmarks not run this time."""
    try:
        old = json.loads(previous.read_text()).get("runs", [])
    except (OSError, ValueError):
        old = []
    ran = {r["benchmark"] for r in runs}
    kept = [{**r, "earlier_run": True} for r in old
            if isinstance(r, dict) and r.get("benchmark") not in ran]
    return [*kept, *runs]


def table(summary_rows: list[dict[str, Any]]) -> str:
    """The summary as a Markdown table (the README shows the same)."""
    lines = ["| benchmark | metric | value | target | met |", "| --- | --- | --- | --- | --- |"]
    for r in summary_rows:
        met = {True: "yes", False: "**no**", None: "—"}[r.get("met")]
        stale = " (earlier run)" if r.get("stale") else ""
        lines.append(f"| {r.get('name', r['file'])}{stale} | {r['metric']} | "
                     f"{_fmt(r.get('value'))} {r.get('unit', '')} | {r.get('target') or '—'} | "
                     f"{met} |")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    names = discover()
    unknown = [a for a in args if a not in names]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {names}", file=sys.stderr)
        return 2
    selected = args or names
    since = time.time()
    load_before = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="selfmod-bench-"))
    os.environ[WORKDIR_ENV] = str(work)
    print(f"benchmarks: {', '.join(selected)} (scratch: {work})", file=sys.stderr, flush=True)
    try:
        runs = [run_one(name, DEADLINE_SECONDS) for name in selected]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary_rows = rows(RESULTS, since)
    runs = _merge_runs(RESULTS / "summary.json", runs)
    summary = {"format": 1, "name": "summary", "runs": runs, "rows": summary_rows,
               "machine": machine(load_before), "finished_at": time.time()}
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print()
    for run in runs:
        earlier = " (earlier run)" if run.get("earlier_run") else ""
        print(f"{run['benchmark']}: {run['status']} in {run['seconds']}s{earlier}")
    print()
    print(table(summary_rows))
    return 0 if all(run["status"] == "ok" for run in runs if not run.get("earlier_run")) else 1


if __name__ == "__main__":
    sys.exit(main())
