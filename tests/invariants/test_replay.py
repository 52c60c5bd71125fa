"""Differential replay in-process: the candidate runs as the live swap would run it."""

from __future__ import annotations

import importlib
import pickle
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from invariants.replay import UNREPRODUCIBLE, CodeSwitch, replay
from invariants.targets import Target, compile_function, resolve
from invariants.tripwire import Tripwire
from snapshots.corpus import CallRecord

MODULE = '''
def fact(n):
    return 1 if n <= 1 else n * fact(n - 1)


def dedupe(items):
    seen = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


COUNTER = [0]


def impure(x):
    COUNTER[0] += 1
    return x + COUNTER[0]
'''


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    name = f"replay_target_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module(name)
    sys.modules.pop(name, None)


def record(fn: Any, *args: Any) -> CallRecord:
    blob = pickle.dumps((args, {}))
    return CallRecord(blob, "return", pickle.dumps(fn(*pickle.loads(blob)[0])),
                      args_after_blob=blob)


def switch_for(module: types.ModuleType, name: str, source: str) -> tuple[CodeSwitch, Tripwire]:
    func = resolve(Target(module.__name__, name))
    tripwire = Tripwire("/nonexistent", ())
    code = compile_function(source, func, filename="<candidate>")
    return CodeSwitch(func, func.__code__, code, tripwire), tripwire


def test_a_recursive_candidate_recurses_into_itself(module: types.ModuleType) -> None:
    """A wrong base case is caught through recursion: the global name runs the candidate too."""
    switch, tripwire = switch_for(module, "fact",
                                  "def fact(n):\n    return 2 if n <= 1 else n * fact(n - 1)\n")
    result = replay(switch, [record(module.fact, 5)], tripwire)
    assert result.status == "mismatch"
    assert result.mismatches[0]["expected"] == "120"
    assert result.mismatches[0]["actual"] == "240"


def test_an_equivalent_candidate_matches_and_is_fingerprinted(module: types.ModuleType) -> None:
    """A correct candidate matches on every call and yields one fingerprint per call."""
    switch, tripwire = switch_for(
        module, "dedupe", "def dedupe(items):\n    return list(dict.fromkeys(items))\n")
    records = [record(module.dedupe, [3, 1, 3, 2, 1]), record(module.dedupe, [])]
    result = replay(switch, records, tripwire)
    assert (result.status, result.calls, len(result.fingerprints)) == ("ok", 2, 2)
    assert not result.mutates


def test_an_impure_original_is_not_reproducible(module: types.ModuleType) -> None:
    """When the original's shadow outcome differs from the live recording, replay stops."""
    switch, tripwire = switch_for(module, "impure", "def impure(x):\n    return x\n")
    result = replay(switch, [record(module.impure, 10)], tripwire)
    assert result.status == "error" and result.reason.startswith(UNREPRODUCIBLE)


def test_a_candidate_that_exits_is_an_error(module: types.ModuleType) -> None:
    """SystemExit from the candidate (where the original returned) is reported as such."""
    switch, tripwire = switch_for(
        module, "dedupe", "def dedupe(items):\n    raise SystemExit(3)\n")
    result = replay(switch, [record(module.dedupe, [1])], tripwire)
    assert result.status == "error" and "SystemExit" in result.reason


def test_mutation_of_inputs_is_noticed_for_the_benchmark(module: types.ModuleType) -> None:
    """A target that mutates its argument is flagged, so each timed call gets a fresh copy."""
    source = "def dedupe(items):\n    items.append(0)\n    return []\n"
    switch, tripwire = switch_for(module, "dedupe", source)
    # The original is the mutating one here: install it as both versions.
    same_switch = CodeSwitch(switch.func, switch._codes["candidate"],
                             switch._codes["candidate"], tripwire)
    blob = pickle.dumps((([1],), {}))
    rec = CallRecord(blob, "return", pickle.dumps([]),
                     args_after_blob=pickle.dumps((([1, 0],), {})))
    result = replay(same_switch, [rec], tripwire)
    assert result.status == "ok" and result.mutates
