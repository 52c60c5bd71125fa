"""State a call leaves behind: candidates that keep a cache between calls are caught."""

from __future__ import annotations

import importlib
import json
import pickle
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from invariants.replay import CodeSwitch, PairRunner, ReplayResult, replay
from invariants.statecheck import (
    NODE_BUDGET,
    StateWatch,
    describe_changes,
    stateful_difference,
)
from invariants.targets import Target, compile_function, resolve
from invariants.tripwire import Tripwire
from snapshots.corpus import CallRecord
from tests.invariants.shadowkit import record_call

MODULE = '''
_CACHE = {}
_SEEN = []
CALLS = [0]
NESTED = {"k": []}


class Registry:
    def __init__(self):
        self.entries = {}


REGISTRY = Registry()


def cube(x):
    return x ** 3


cube.hits = {}


def square(x, _memo={}):
    return x * x


def counted(x):
    CALLS[0] += 1
    return x + 1
'''

INPUTS = [(2,), (3,), (2,), (-1,)]


@pytest.fixture
def module(tmp_path: Path) -> Iterator[types.ModuleType]:
    name = f"state_target_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def switch_for(module: types.ModuleType, name: str, source: str) -> tuple[CodeSwitch, Tripwire]:
    func = resolve(Target(module.__name__, name))
    tripwire = Tripwire("/nonexistent", ())
    code = compile_function(textwrap.dedent(source), func, filename="<candidate>")
    return CodeSwitch(func, func.__code__, code, tripwire), tripwire


def records(module: types.ModuleType, name: str) -> list[CallRecord]:
    return [record_call(getattr(module, name), args) for args in INPUTS]


def replay_watched(module: types.ModuleType, name: str, source: str) -> ReplayResult:
    switch, tripwire = switch_for(module, name, source)
    recorded = records(module, name)
    return replay(switch, recorded, tripwire, state=StateWatch(switch.func))


STATEFUL = {
    "setdefault": ("cube", """
        def cube(x):
            return _CACHE.setdefault(x, x ** 3)
        """, "global _CACHE grew from 0 to 1 items"),
    "default": ("square", """
        def square(x, _memo={}):
            if x not in _memo:
                _memo[x] = x * x
            return _memo[x]
        """, "default argument _memo grew from 0 to 1 items"),
    "append": ("cube", """
        def cube(x):
            _SEEN.append(x)
            return x ** 3
        """, "global _SEEN grew from 0 to 1 items"),
    "object": ("cube", """
        def cube(x):
            REGISTRY.entries[x] = x ** 3
            return REGISTRY.entries[x]
        """, "global REGISTRY changed in place"),
    "function attribute": ("cube", """
        def cube(x):
            return cube.hits.setdefault(x, x ** 3)
        """, "attribute cube.hits grew from 0 to 1 items"),
    "nested": ("cube", """
        def cube(x):
            NESTED["k"].append(x)
            return x ** 3
        """, "global NESTED changed in place"),
}


@pytest.mark.parametrize("case", sorted(STATEFUL))
def test_a_candidate_that_keeps_state_is_a_stateful_mismatch(module: types.ModuleType,
                                                             case: str) -> None:
    """A cache filled through a method call, a default, an object or a function attribute
    stops the replay at the first call with a ``stateful`` mismatch naming the place."""
    name, source, change = STATEFUL[case]
    result = replay_watched(module, name, source)
    assert result.status == "mismatch"
    assert result.mismatch_count == 1
    evidence = result.mismatches[0]
    assert (evidence["kind"], evidence["index"], evidence["args_repr"]) == ("stateful", 0, "(2)")
    assert change in evidence["actual"]
    assert change.split(" grew")[0].split(" changed")[0] in evidence["expected"]
    assert change in result.reason and "keeps state between calls" in result.reason


def test_without_a_watch_the_caching_candidate_passes_replay(module: types.ModuleType) -> None:
    """The reason for the watch: outcomes alone cannot tell a cache from an honest rewrite."""
    name, source, _ = STATEFUL["setdefault"]
    switch, tripwire = switch_for(module, name, source)
    result = replay(switch, records(module, name), tripwire)
    assert (result.status, result.calls) == ("ok", len(INPUTS))


def test_an_honest_candidate_passes_the_watch(module: types.ModuleType) -> None:
    """A pure rewrite changes nothing outside the call and replays every record."""
    result = replay_watched(module, "cube", "def cube(x):\n    return x * x * x\n")
    assert (result.status, result.calls, result.mismatches) == ("ok", len(INPUTS), [])
    assert len(result.fingerprints) == len(INPUTS)


def test_state_the_original_changes_too_is_not_flagged(module: types.ModuleType) -> None:
    """An original that counts its calls in a global is matched by a candidate that does
    the same: only changes the original does not make count against the candidate."""
    switch, tripwire = switch_for(module, "counted", """
        def counted(x):
            CALLS[0] += 1
            return 1 + x
        """)
    recorded = records(module, "counted")
    calls_before = module.CALLS[0]
    result = replay(switch, recorded, tripwire, state=StateWatch(switch.func))
    assert (result.status, result.calls) == ("ok", len(INPUTS))
    assert module.CALLS[0] == calls_before + 2 * len(INPUTS)  # both versions counted


def test_a_candidate_changing_other_state_than_the_original_is_flagged(
        module: types.ModuleType) -> None:
    """Counting like the original is fine, caching besides is not."""
    result = replay_watched(module, "counted", """
        def counted(x):
            CALLS[0] += 1
            return _CACHE.setdefault(x, x + 1)
        """)
    assert result.status == "mismatch"
    assert result.mismatches[0]["kind"] == "stateful"
    assert "global _CACHE" in result.mismatches[0]["actual"]
    assert "CALLS" not in result.mismatches[0]["actual"]


def test_outcome_mismatches_before_the_stateful_call_are_kept(module: types.ModuleType) -> None:
    """A wrong result on an earlier call stays in the evidence next to the stateful one."""
    switch, tripwire = switch_for(module, "cube", """
        def cube(x):
            if x == 3:
                _SEEN.append(x)
            return x ** 2
        """)
    result = replay(switch, records(module, "cube"), tripwire, state=StateWatch(switch.func))
    kinds = [(m["index"], m["kind"]) for m in result.mismatches]
    assert kinds == [(0, "value"), (1, "stateful")]
    assert result.status == "mismatch" and result.mismatch_count == 2


def test_generated_inputs_are_watched_through_the_pair_runner(module: types.ModuleType) -> None:
    """The runner used for generated inputs stops at a stateful call and says which input."""
    name, source, change = STATEFUL["append"]
    switch, tripwire = switch_for(module, name, source)
    runner = PairRunner(switch, tripwire, state=StateWatch(switch.func))
    result = ReplayResult()
    blob = pickle.dumps(((5,), {}))

    def load() -> tuple[tuple[Any, ...], dict[str, Any]]:
        args, kwargs = pickle.loads(blob)
        return tuple(args), dict(kwargs)

    assert runner.run(load, result, index=7) is None
    assert result.status == "mismatch"
    assert (result.mismatches[0]["index"], result.mismatches[0]["kind"]) == (7, "stateful")
    assert change in result.mismatches[0]["actual"]


def test_a_closure_cell_that_fills_up_is_seen() -> None:
    """State kept in a closure variable is a place of its own."""

    def make() -> Any:
        cache: dict[int, int] = {}

        def lookup(x: int) -> int:
            return cache.setdefault(x, x)

        return lookup

    lookup = make()
    watch = StateWatch(lookup)
    with watch.track() as changed:
        lookup(4)
    assert changed == {"closure variable cache":
                       "closure variable cache grew from 0 to 1 items"}
    with watch.track() as changed:
        lookup(4)
    assert changed == {}


class Hostile:
    """Once trapping, every method a careless walk would call raises and records that it ran."""

    called: list[str] = []
    trap = False

    def __init__(self) -> None:
        self.payload = [1, 2]

    def _ran(self, name: str) -> None:
        if type(self).trap:
            type(self).called.append(name)
            raise AssertionError(f"{name} ran")

    def __eq__(self, other: object) -> bool:
        self._ran("__eq__")
        return self is other

    def __hash__(self) -> int:
        self._ran("__hash__")
        return 1

    def __repr__(self) -> str:
        self._ran("__repr__")
        return "Hostile()"

    def __getattribute__(self, name: str) -> Any:
        if name not in ("_ran",):
            object.__getattribute__(self, "_ran")(f"getattr {name}")
        return object.__getattribute__(self, name)


class HostileDict(dict[Any, Any]):
    def __iter__(self) -> Any:
        Hostile.called.append("__iter__")
        raise AssertionError("__iter__ ran")

    def __len__(self) -> int:
        Hostile.called.append("__len__")
        raise AssertionError("__len__ ran")

    def items(self) -> Any:
        Hostile.called.append("items")
        raise AssertionError("items ran")


def test_fingerprinting_runs_no_method_of_the_objects_it_walks(tmp_path: Path) -> None:
    """Globals with hostile methods are walked through the builtin types' own code only,
    and a change inside them is still seen."""
    namespace: dict[str, Any] = {"__name__": "hostile_target"}
    exec(compile("def target(x):\n    return x\n", str(tmp_path / "t.py"), "exec"), namespace)
    hostile = Hostile()
    mapping = HostileDict()
    namespace.update(OBJ=hostile, MAP=mapping, KEYED={hostile: hostile})
    watch = StateWatch(namespace["target"])
    Hostile.called.clear()
    Hostile.trap = True
    try:
        before = watch.fingerprint()
        dict.__setitem__(mapping, "k", 1)
        object.__getattribute__(hostile, "payload").append(3)
        after = watch.fingerprint()
        changed = watch.changes(before, after)
    finally:
        Hostile.trap = False
    assert Hostile.called == []
    assert changed["global MAP"] == "global MAP grew from 0 to 1 items"
    assert changed["global OBJ"] == "global OBJ changed in place"
    assert changed["global KEYED"] == "global KEYED changed in place"


def test_a_large_global_is_fingerprinted_within_the_budget(module: types.ModuleType) -> None:
    """A big structure is walked only up to the node budget, and growth is still seen."""
    big = module.__dict__["BIG"] = [[i] for i in range(100_000)]
    watch = StateWatch(module.cube)
    before = watch.fingerprint()
    assert before is not None
    assert len(before.keep) < 20 * NODE_BUDGET
    big.append([0])
    assert watch.changes(before, watch.fingerprint())["global BIG"] == \
        "global BIG grew from 100000 to 100001 items"


def test_unknown_state_is_never_a_change(module: types.ModuleType) -> None:
    """Without a fingerprint on either side nothing is reported, and nothing raises."""
    watch = StateWatch(module.cube)
    after = watch.fingerprint()
    assert watch.changes(None, after) == {}
    assert describe_changes(after, None) == {}
    assert stateful_difference({}, {}) is None


def test_stateful_difference_names_only_what_the_original_left_alone() -> None:
    """Places both calls changed are not evidence; the rest are named, a few at most."""
    assert stateful_difference({"global A": "global A grew from 0 to 1 items"},
                               {"global A": "global A grew from 1 to 2 items"}) is None
    candidate = {f"global X{i}": f"global X{i} was added" for i in range(5)}
    difference = stateful_difference({}, candidate)
    assert difference is not None and difference.kind == "stateful"
    assert "global X0 was added; global X1 was added; global X2 was added; and 2 more" in \
        difference.actual
    assert "global X0, global X1, global X2 and 2 more" in difference.expected


ARMED_SCRIPT = '''
import json, os, sys
sys.path.insert(0, {code!r})
import targets
from invariants.replay import CodeSwitch, replay
from invariants.statecheck import StateWatch
from invariants.targets import Target, compile_function, resolve
from invariants.tripwire import Tripwire
from tests.invariants.shadowkit import record_call

func = resolve(Target("targets", "square"))
original = func.__code__
records = [record_call(func, (n,)) for n in (2, 3, 2)]
roots = tuple(p for p in sys.path if os.path.isabs(p)) + (sys.prefix, sys.base_prefix)
tripwire = Tripwire({tmp!r}, read_roots=roots)
tripwire.install()
runs = [(label, compile_function(source, func, filename="<candidate>"), StateWatch(func))
        for label, source in {candidates!r}]  # watches made before arming, as the shadow does
tripwire.arm()
out = {{}}
for label, code, watch in runs:
    result = replay(CodeSwitch(func, original, code, tripwire), records, tripwire, state=watch)
    out[label] = [result.status, [m["kind"] for m in result.mismatches],
                  [s.event for s in tripwire.sightings]]
print(json.dumps(out))
'''


def test_the_watch_raises_no_audit_event_under_an_armed_tripwire(tmp_path: Path) -> None:
    """In a process with the shadow's tripwire installed and armed, fingerprinting every
    call trips nothing: a stateful candidate is a mismatch, an honest one passes."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "targets.py").write_text(MODULE)
    candidates = [
        ("honest", "def square(x, _memo={}):\n    return x ** 2\n"),
        ("memo", "def square(x, _memo={}):\n    return _memo.setdefault(x, x * x)\n"),
    ]
    script = ARMED_SCRIPT.format(code=str(code), candidates=candidates, tmp=str(tmp_path))
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["honest"] == ["ok", [], []]
    assert found["memo"] == ["mismatch", ["stateful"], []]
