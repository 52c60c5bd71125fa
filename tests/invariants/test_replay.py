"""Differential replay in-process: the candidate runs as the live swap would run it."""

from __future__ import annotations

import importlib
import pickle
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from invariants.replay import UNREPRODUCIBLE, CodeSwitch, replay, shuffled_order
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


def test_a_shuffled_replay_keeps_fingerprints_and_evidence_indexed_by_record(
        module: types.ModuleType) -> None:
    """Replayed in a shuffled order, fingerprints and a mismatch's index still follow the
    records, so two processes replaying in different orders compare call by call."""
    source = ("def dedupe(items):\n"
              "    return [] if items == [9] else list(dict.fromkeys(items))\n")
    switch, tripwire = switch_for(module, "dedupe", source)
    records = [record(module.dedupe, items) for items in ([1, 1], [2], [9], [3, 2, 3], [])]
    order = shuffled_order(len(records), 7)
    assert order is not None and order != sorted(order)
    in_order = replay(switch, records, tripwire)
    shuffled = replay(switch, records, tripwire, order=order)
    assert shuffled.fingerprints == in_order.fingerprints
    assert len(shuffled.fingerprints) == len(records)
    assert [m["index"] for m in shuffled.mismatches] == [2]
    assert [m["index"] for m in in_order.mismatches] == [2]
    assert shuffled.reason == in_order.reason


def test_shuffled_order_is_a_seeded_permutation_and_none_for_seed_zero() -> None:
    """Seed 0 keeps the recorded order; any other seed gives the same permutation each time."""
    assert shuffled_order(10, 0) is None
    first = shuffled_order(10, 3)
    assert first == shuffled_order(10, 3)
    assert first is not None and sorted(first) == list(range(10))
    assert first != shuffled_order(10, 4)


def test_an_order_that_is_not_a_permutation_is_refused(module: types.ModuleType) -> None:
    """An order that skips or repeats a record is a caller's mistake, refused before any call."""
    switch, tripwire = switch_for(module, "fact", "def fact(n):\n    return 1\n")
    records = [record(module.fact, 1), record(module.fact, 2)]
    with pytest.raises(ValueError, match="permutation"):
        replay(switch, records, tripwire, order=[0, 0])


def test_state_carried_between_calls_shows_in_a_shuffled_order(
        module: types.ModuleType) -> None:
    """A candidate whose answer depends on the calls before it fails on other records
    when the same records run in another order."""
    source = ("def dedupe(items):\n"
              "    COUNTER.append(0)\n"
              "    return list(dict.fromkeys(items)) if len(COUNTER) < 4 else []\n")
    switch, tripwire = switch_for(module, "dedupe", source)
    module.__dict__["COUNTER"] = []
    records = [record(module.dedupe, items) for items in ([1], [2], [3], [4], [5])]
    first = replay(switch, records, tripwire)
    module.__dict__["COUNTER"] = []
    second = replay(switch, records, tripwire, order=[4, 3, 2, 1, 0])
    assert [m["index"] for m in first.mismatches] == [3, 4]
    assert [m["index"] for m in second.mismatches] == [1, 0]
