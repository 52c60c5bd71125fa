"""Slow functions the daemon has not seen: how many it speeds up, and whether any comes out wrong.

``bench/corpus/slowcode.py`` holds functions of the kinds real projects have
(an export aggregation, a tokenizer, a BFS with a list queue, an inventory
reconciliation, a top-N by repeated sorting, a table renderer, a dependency
check); ``bench/corpus/corpus_app.py`` keeps them busy. The daemon hosts that
app exactly as a user would run it::

    selfmod run --app corpus_app:main --scope 'slowcode:*' --exit-when-idle

with ``bench/corpus`` on ``PYTHONPATH``, until no hot target is left to try
(or the time budget ends). Afterwards this process installs the versions the
daemon left active and checks them on inputs the daemon never recorded (a
different seed, plus empty inputs): every result and exception, and what each
call did to its arguments, must equal the original's. It also times each
converged function against its original on those inputs.
"""

from __future__ import annotations

import contextlib
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench._common import (
    RESULTS,
    ROOT,
    Converged,
    metric,
    progress,
    pyplot,
    result,
    run_daemon,
    save_figure,
    workdir,
    write_result,
)

NAME = "unseen"
CORPUS = ROOT / "bench" / "corpus"
MODULE = "slowcode"
DAEMON_TIMEOUT_SECONDS = 170.0
CHECK_SEED = 7
CHECK_CASES = 12
TIMING_ROUNDS = 9
EMPTY_CASES: dict[str, list[tuple[Any, ...]]] = {
    "sales_by_region": [([],), (["date,region,sku,quantity,unit_cents"],)],
    "tokenize": [("",), ("   ",), ('"unterminated',)],
    "shortest_hops": [([], 0), ([(1, 2)], 3)],
    "reconcile_inventory": [([], []), ([("A", 1)], [])],
    "top_customers": [([], 3), ([("a", 1), ("b", 1)], 0), ([("a", 1), ("b", 1)], 5)],
    "render_table": [(["a"], []), ([], [])],
    "overdue_tasks": [([], "2024-01-01")],
}


def _outcome(function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, Any]:
    """(value or exception, the arguments afterwards), on a private copy of the arguments."""
    mine = copy.deepcopy(args)
    try:
        value: Any = ("value", function(*mine))
    except Exception as exc:
        value = ("raised", type(exc).__name__, str(exc))
    return value, mine


def _time(function: Callable[..., Any], cases: list[tuple[Any, ...]]) -> float:
    start = time.perf_counter()
    for args in cases:
        with contextlib.suppress(Exception):  # an empty case may raise; that is timed too
            function(*args)
    return time.perf_counter() - start


def check(converged: Converged, cases: dict[str, list[tuple[Any, ...]]]) -> dict[str, Any]:
    """Outcomes of the original and converged code on ``cases``, and their speed, per function."""
    import slowcode

    out: dict[str, Any] = {}
    originals = {name: [_outcome(getattr(slowcode, name), args) for args in pool]
                 for name, pool in cases.items()}
    converged.install()
    try:
        for name, pool in cases.items():
            now = [_outcome(getattr(slowcode, name), args) for args in pool]
            wrong = [i for i, (a, b) in enumerate(zip(originals[name], now, strict=True))
                     if a != b]
            out[name] = {"cases": len(pool), "wrong": len(wrong), "wrong_cases": wrong[:5]}
    finally:
        converged.rollback()
    for name, pool in cases.items():
        target = f"{MODULE}:{name}"
        if target not in converged.codes:
            continue
        function = getattr(slowcode, name)
        private = [copy.deepcopy(args) for args in pool]
        times: dict[bool, list[float]] = {False: [], True: []}
        for n in range(TIMING_ROUNDS):  # interleaved, alternating which side goes first
            for optimised in ((False, True) if n % 2 == 0 else (True, False)):
                args = copy.deepcopy(private)
                if optimised:
                    converged.install()
                try:
                    times[optimised].append(_time(function, args))
                finally:
                    if optimised:
                        converged.rollback()
        # the fastest round of each: on a shared machine, noise only ever adds time
        out[name]["speedup"] = round(min(times[False]) / min(times[True]), 3)
        out[name]["speedup_median"] = round(statistics.median(times[False])
                                            / statistics.median(times[True]), 3)
    return out


def _plot(functions: dict[str, dict[str, Any]], path: os.PathLike[str]) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    names = list(functions)
    speedups = [functions[n].get("speedup") or 1.0 for n in names]
    colours = ["tab:red" if functions[n]["wrong"] else
               "tab:green" if functions[n].get("version") else "tab:gray" for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh(names, speedups, color=colours)
    ax.axvline(1.0, color="black", linewidth=0.8)
    for y, name in enumerate(names):
        entry = functions[name]
        note = (f"{entry['speedup']:.1f}x" if entry.get("version") else
                "; ".join(dict.fromkeys(entry.get("reasons") or entry.get("outcomes") or
                                        ["not tried"])))
        ax.text(speedups[y] * 1.02, y, note, va="center", fontsize=7)
    ax.set_xlim(0, max(speedups) * 1.8)
    ax.set_xlabel("speedup on unseen inputs (grey: left unchanged, with the daemon's reason)")
    ax.set_title("Unseen slow functions after one daemon run", fontsize=10)
    return save_figure(plt, fig, path)


def main() -> int:
    started, load_before = time.monotonic(), os.getloadavg()
    base = workdir() / NAME
    base.mkdir(parents=True, exist_ok=True)
    state, report_path, log = base / "state", base / "report.json", base / "daemon.log"
    report = run_daemon(NAME, state, report_path, log,
                        extra=("--app", "corpus_app:main", "--scope", f"{MODULE}:*"),
                        extra_path=(CORPUS,), timeout=DAEMON_TIMEOUT_SECONDS, cwd=base)
    sys.path.insert(0, str(CORPUS))
    import corpus_app

    converged = Converged(state)
    cases = corpus_app.cases(CHECK_SEED, CHECK_CASES)
    for name, extra in EMPTY_CASES.items():
        cases[name] = [*cases[name], *extra]
    progress(NAME, f"{len(converged.codes)} active versions; checking them on "
                   f"{sum(map(len, cases.values()))} unseen inputs")
    functions = check(converged, cases)
    tried = {c["target"] for c in report["cycles"]}
    claimed = {c["target"]: c for c in report["candidates"] if c["verdict"] == "swapped"}
    for name, entry in functions.items():
        target = f"{MODULE}:{name}"
        entry["tried"] = target in tried
        entry["version"] = converged.codes[target][0] if target in converged.codes else None
        entry["origin"] = converged.origins.get(target)
        if target in claimed:
            entry["daemon_speedup"] = round(claimed[target]["speedup"], 3)
            entry["daemon_ci"] = [round(claimed[target]["ci_low"], 3),
                                  round(claimed[target]["ci_high"], 3)]
        entry["outcomes"] = [c["outcome"] for c in report["cycles"] if c["target"] == target]
        entry["reasons"] = [c["reason"] for c in report["cycles"]
                            if c["target"] == target and c["reason"]]
    sped_up = sum(1 for e in functions.values() if e["version"] and e.get("speedup", 0) > 1.0)
    changed = sum(1 for e in functions.values() if e["version"])
    wrong = sum(1 for e in functions.values() if e["wrong"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    png = RESULTS / f"{NAME}.png"
    plotted = _plot(functions, png)
    metrics = [
        metric("functions_sped_up", sped_up, f"of {len(functions)}",
               changed=changed, tried=len(tried & {f"{MODULE}:{n}" for n in functions})),
        metric("functions_wrong", wrong, "count", target="== 0", met=wrong == 0,
               unseen_cases=sum(e["cases"] for e in functions.values())),
    ]
    details = {"functions": functions, "daemon": {
        "exit_reason": report["exit_reason"], "timed_out": report["timed_out"],
        "wall_seconds": report["wall_seconds"], "cycles": report["cycles"],
        "compute": report["compute"]}, "png": png.name if plotted else None}
    params = {"command": f"selfmod run --config config/selfmod.yaml --app corpus_app:main "
                         f"--scope '{MODULE}:*' --exit-when-idle --metrics-port 0",
              "pythonpath": "bench/corpus", "daemon_timeout_seconds": DAEMON_TIMEOUT_SECONDS,
              "check_seed": CHECK_SEED, "check_cases_per_function": CHECK_CASES,
              "timing_rounds": TIMING_ROUNDS}
    data = result(NAME, "unseen slow functions given to the daemon: sped up, and none wrong",
                  metrics, params, details, started=started, load_before=load_before)
    path = write_result(data)
    progress(NAME, f"{sped_up}/{len(functions)} sped up, {wrong} wrong -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
