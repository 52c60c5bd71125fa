"""The demo workload's live oracle: a frozen copy of the original ``logstats``.

The daemon changes functions only in memory (it assigns new code objects to
live function objects) and never writes source files, so the pristine
implementation is always on disk. This module executes that file a second
time into a separate module object named ``selfmod_demo_oracle``; the name
matches a protected pattern in :mod:`invariants.targets`, so the oracle's
functions can never become targets, and swapping code into
``demo.logstats`` leaves them untouched.

:data:`ORACLE_SHA256` is the sha256 of the exact bytes that were executed (the
same value :func:`invariants.targets.sha256_text` gives for the file's text), for
the integrity checker to compare with the file as it is now.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ORACLE_MODULE_NAME = "selfmod_demo_oracle"
ORACLE_PATH = Path(__file__).resolve().with_name("logstats.py")

_DETAIL_LIMIT = 300


def load_oracle(path: Path = ORACLE_PATH,
                name: str = ORACLE_MODULE_NAME) -> tuple[types.ModuleType, str]:
    """Execute the file at ``path`` into a new module called ``name``; return it and its sha256.

    The module is not registered in ``sys.modules``. The bytes are read once and
    both hashed and compiled from that one read, so the hash always describes
    the code that runs, even if the file changes while it is being loaded.
    """
    data = path.read_bytes()
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise ImportError(f"cannot make a module spec for {path}")
    module = importlib.util.module_from_spec(spec)
    exec(compile(data, str(path), "exec", dont_inherit=True), module.__dict__)
    return module, hashlib.sha256(data).hexdigest()


_ORACLE, ORACLE_SHA256 = load_oracle()
# Registered so that tools that map a frame's module name to a module (profilers,
# inspect, pickle) find it; the name keeps it out of every scope.
sys.modules.setdefault(ORACLE_MODULE_NAME, _ORACLE)


def oracle_module() -> types.ModuleType:
    """The frozen module itself (its functions are never the live ones)."""
    return _ORACLE


def oracle_process_batch(lines: list[str]) -> Any:
    """What the original ``logstats.process_batch`` returns for ``lines``."""
    return _ORACLE.process_batch(list(lines))


def locate_mismatch(live: types.ModuleType, lines: list[str]) -> tuple[str, str]:
    """Name the first ``logstats`` function whose live outcome differs from the oracle's.

    Each function is called on the live and on the frozen module with the same
    arguments (the oracle's own intermediate values for ``lines``), leaves of the
    pipeline first, so the culprit is named rather than just ``process_batch``.
    Returns ``(function_name, detail)``, or ``("", "")`` when all agree.
    """
    o = _ORACLE
    records = o.parse_batch(list(lines))
    sessions = o.dedupe_sessions(records)
    values = o.latencies(records)
    stats = o.process_batch(list(lines))
    calls: list[tuple[str, tuple[Any, ...]]] = [("parse_line", (line,)) for line in lines]
    calls.append(("parse_batch", (lines,)))
    for name in ("dedupe_sessions", "unique_visitors", "count_by_endpoint", "count_by_status",
                 "count_by_method_class", "server_errors", "total_bytes", "latencies",
                 "time_range"):
        calls.append((name, (records,)))
    calls.append(("slowest_endpoints", (records, o.TOP_K)))
    calls.append(("sessions_per_user", (sessions,)))
    calls.extend(("percentile", (values, q)) for _, q in o.QUANTILES if values)
    calls.append(("latency_percentiles", (values,)))
    calls.append(("latency_distribution", (values,)))
    calls.append(("top_k", (o.count_by_endpoint(records), o.TOP_K)))
    calls.append(("render_report", ({k: v for k, v in stats.items() if k != "report"},)))
    calls.append(("process_batch", (lines,)))
    for name, args in calls:
        live_fn = getattr(live, name, None)
        if not callable(live_fn):
            continue
        expected = _outcome(getattr(o, name), args)
        actual = _outcome(live_fn, args)
        if actual != expected:
            shown = ", ".join(_short(arg) for arg in args)
            return name, f"{name}({shown}): expected {_short(expected)}, got {_short(actual)}"
    return "", ""


def _outcome(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[str, Any]:
    """``("value", result)`` or ``("raise", (type name, args))``, on private copies of ``args``."""
    try:
        return ("value", fn(*copy.deepcopy(args)))
    except Exception as exc:
        return ("raise", (type(exc).__name__, exc.args))


def _short(value: Any) -> str:
    text = repr(value)
    if len(text) > _DETAIL_LIMIT:
        return text[:_DETAIL_LIMIT] + f"... ({len(text)} chars)"
    return text
