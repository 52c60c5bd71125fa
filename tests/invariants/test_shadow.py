"""Each outcome pitfall through the real sandbox: a candidate that differs only in that way.

The candidates go to the sandbox directly (no static gate), with generated inputs
off, so that each rejection is the differential replay's and names the pitfall.
Hash-seed dependence is covered in tests/envelope/test_sandbox.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from envelope.isolation import Isolation
from invariants.accept import Accepted, Rejected, decide
from tests.invariants.shadowkit import Workspace, check_clean, make_workspace

TARGETS = '''
def total(xs):
    return sum(xs)


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def zeroed(x):
    return x * 0.0


def doubled(rows):
    return {"rows": [[v * 2 for v in row] for row in rows]}


def first(xs):
    if not xs:
        raise ValueError("empty input")
    return xs[0]


def ordered(xs):
    return sorted(xs)


def copy_of(xs):
    return list(xs)


def evens(xs):
    for x in xs:
        if x % 2 == 0:
            yield x


def shout(words):
    for word in words:
        print(word.upper())
    return len(words)


def pairs(n):
    return sum(1 for i in range(n) for j in range(n) if i < j)
'''

CORPORA: dict[str, list[tuple[Any, ...]]] = {
    "total": [([1, 2, 3],), ([1],), ([],)],
    "mean": [([],), ([1, 2],)],
    "zeroed": [(-3.0,), (2.0,)],
    "doubled": [([[1, 2], [3]],)],
    "first": [([],), ([3, 1],)],
    "ordered": [([3, 1, 2],)],
    "copy_of": [([3, 1, 2],)],
    "evens": [([1, 2, 3, 4],)],
    "shout": [(["a", "b"],)],
    "pairs": [(120,), (90,), (100,)],
}

# (pitfall, target, candidate, mismatch kind)
PITFALLS = [
    ("int-vs-float", "total", "def total(xs):\n    return float(sum(xs))\n", "value"),
    ("int-vs-bool", "total",
     "def total(xs):\n    s = sum(xs)\n    return True if s == 1 else s\n", "value"),
    ("nan-vs-number", "mean",
     "def mean(xs):\n    return sum(xs) / len(xs) if xs else 0.0\n", "value"),
    ("negative-zero", "zeroed", "def zeroed(x):\n    return 0.0\n", "value"),
    ("deep-container", "doubled",
     "def doubled(rows):\n    return {'rows': [tuple(v * 2 for v in row) for row in rows]}\n",
     "value"),
    ("exception-type", "first",
     "def first(xs):\n    if not xs:\n        raise IndexError('empty input')\n"
     "    return xs[0]\n", "exception"),
    ("exception-message", "first",
     "def first(xs):\n    if not xs:\n        raise ValueError('no input')\n"
     "    return xs[0]\n", "exception"),
    ("raise-vs-return", "first",
     "def first(xs):\n    return xs[0] if xs else None\n", "outcome"),
    ("argument-mutation", "ordered",
     "def ordered(xs):\n    xs.sort()\n    return list(xs)\n", "mutation"),
    ("aliasing", "copy_of", "def copy_of(xs):\n    return xs\n", "alias"),
    ("generator-vs-list", "evens",
     "def evens(xs):\n    return [x for x in xs if x % 2 == 0]\n", "outcome"),
    ("generator-raises-late", "evens",
     "def evens(xs):\n    for x in xs:\n        if x % 2 == 0:\n            yield x\n"
     "    raise RuntimeError('late')\n", "iterator"),
    ("generator-extra-item", "evens",
     "def evens(xs):\n    for x in xs:\n        if x % 2 == 0:\n            yield x\n"
     "    yield 0\n", "iterator"),
    ("printed-output", "shout", "def shout(words):\n    return len(words)\n", "output"),
    ("printed-case", "shout",
     "def shout(words):\n    for word in words:\n        print(word)\n    return len(words)\n",
     "output"),
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("pitfalls")
    space = make_workspace(root, "pitfall_targets", TARGETS)
    for name, calls in CORPORA.items():
        space.record(name, calls)
    yield space
    check_clean(root)


@pytest.mark.parametrize(("target", "source", "kind"),
                         [case[1:] for case in PITFALLS], ids=[case[0] for case in PITFALLS])
def test_a_candidate_differing_only_in_one_way_is_rejected_for_it(
        workspace: Workspace, isolation: Isolation, target: str, source: str,
        kind: str) -> None:
    """The shadow reports a mismatch of the pitfall's kind, and acceptance rejects it."""
    report = workspace.run(isolation, target, source)
    assert report.status == "mismatch", report.reason
    assert report.mismatches[0].kind == kind, report.mismatches
    verdict = decide(report, 1.0)
    assert isinstance(verdict, Rejected) and (verdict.stage, verdict.reason) == ("shadow",
                                                                                 "mismatch")


def test_nan_where_the_original_returns_nan_is_the_same_outcome(
        workspace: Workspace, isolation: Isolation) -> None:
    """A NaN result equals the original's NaN: the replay does not reject a correct rewrite."""
    source = "def mean(xs):\n    return float('nan') if not xs else sum(xs) / len(xs)\n"
    report = workspace.run(isolation, "mean", source)
    assert report.status == "ok", report.reason
    assert report.checks[0] == "differential"


def test_a_clear_speedup_stops_timing_at_five_pairs(
        workspace: Workspace, isolation: Isolation) -> None:
    """Told the acceptance rule, the benchmark stops once the pairs settle it; a job without
    the rule (min_speedup 0) times every repeat."""
    source = "def pairs(n):\n    return n * (n - 1) // 2\n"
    told = workspace.run(isolation, "pairs", source, repeats=12, min_speedup=1.05)
    assert told.status == "ok", told.reason
    assert len(told.original_times) == len(told.candidate_times) == 5
    assert isinstance(decide(told, 1.05), Accepted)
    untold = workspace.run(isolation, "pairs", source, repeats=12)
    assert len(untold.original_times) == 12
