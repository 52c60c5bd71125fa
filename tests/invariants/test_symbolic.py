"""The symbolic diff's child, run in the real jail with real CrossHair, on its own.

Each test starts ``python -m invariants.symbolic`` as the sandbox starts its
children (:func:`tests.invariants.shadowkit.run_child`) and reads its report;
the sandbox's use of it is tests/envelope/test_sandbox_symbolic.py. Budgets are
a few seconds of CPU: CrossHair searches until the budget is spent unless it
exhausts every path.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from envelope.isolation import Isolation
from envelope.jail import SandboxLimits
from tests.invariants.shadowkit import Workspace, check_clean, make_workspace, run_child

TARGETS = '''
class Box:
    def __init__(self, w, h):
        self.w, self.h = w, h


def scale(x):
    return x * 3 + 1


def scale_typed(x: int) -> int:
    return x * 3 + 1


def score(word, weights):
    return weights.get(word, 0) + len(word)


def total(xs):
    s = 0
    for x in xs:
        s += x
    return s


def area(box):
    return box.w * box.h
'''

SYMBOLIC = "invariants.symbolic"
# z3 starts threads of its own: the sandbox raises the process limit for this child
LIMITS = SandboxLimits(cpu_seconds=20, memory_mb=512, wall_seconds=40, processes=4)
RARE_INT = "def scale(x):\n    if x == 7919:\n        return 0\n    return x * 3 + 1\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """The targets above with corpora that never reach the candidates' special cases."""
    workspace = make_workspace(tmp_path, "symmod", TARGETS)
    workspace.record("scale", [(1,), (5,), (-3,), (100,)])
    workspace.record("scale_typed", [])
    workspace.record("score", [("a", {"a": 2}), ("bb", {}), ("c", {"a": 1, "c": 4})])
    workspace.record("total", [([1, 2, 3],), ([],)])
    sys.path.insert(0, str(workspace.code))
    try:
        import symmod

        workspace.record("area", [(symmod.Box(2, 3),)])
    finally:
        sys.path.remove(str(workspace.code))
        sys.modules.pop("symmod", None)
    yield workspace
    check_clean(workspace.root)


def test_a_rare_wrong_int_branch_is_a_symbolic_mismatch(workspace: Workspace,
                                                        isolation: Isolation) -> None:
    """A branch on an int no recorded call reaches is found, re-run and reported with its input."""
    report = run_child(workspace, isolation, SYMBOLIC, "scale", RARE_INT, limits=LIMITS,
                       symbolic_seconds=2)
    assert report.status == "mismatch", report.reason
    (mismatch,) = report.mismatches
    assert (mismatch.kind, mismatch.args_repr) == ("symbolic", "(7919)")
    assert (mismatch.expected, mismatch.actual) == ("23758", "0")
    assert report.found == ("((7919,), {})",)
    assert ast.literal_eval(report.found[0]) == ((7919,), {})


def test_a_string_key_special_case_is_found(workspace: Workspace,
                                            isolation: Isolation) -> None:
    """A special case on one string key is found with a dict argument that reads back."""
    source = ("def score(word, weights):\n    if word == 'vip':\n        return 0\n"
              "    return weights.get(word, 0) + len(word)\n")
    report = run_child(workspace, isolation, SYMBOLIC, "score", source, limits=LIMITS,
                       symbolic_seconds=2)
    assert report.status == "mismatch", report.reason
    assert {m.kind for m in report.mismatches} == {"symbolic"}
    args, kwargs = ast.literal_eval(report.found[0])
    word, weights = args
    assert (word, kwargs) == ("vip", {}) and isinstance(weights, dict)
    assert report.mismatches[0].actual == "0"
    assert report.mismatches[0].expected == str(weights.get(word, 0) + 3)


def test_types_come_from_complete_annotations(workspace: Workspace,
                                              isolation: Isolation) -> None:
    """An annotated target needs no recorded call to be diffed."""
    source = RARE_INT.replace("def scale(x)", "def scale_typed(x: int) -> int")
    report = run_child(workspace, isolation, SYMBOLIC, "scale_typed", source, limits=LIMITS,
                       symbolic_seconds=2)
    assert report.status == "mismatch", report.reason
    assert report.found == ("((7919,), {})",)


def test_an_equivalent_candidate_is_ok_and_not_a_proof(workspace: Workspace,
                                                       isolation: Isolation) -> None:
    """A candidate equal on every input is ok, with a note that says this is no proof."""
    report = run_child(workspace, isolation, SYMBOLIC, "total",
                       "def total(xs):\n    return sum(xs)\n", limits=LIMITS,
                       symbolic_seconds=2)
    assert report.status == "ok", report.reason
    assert report.notes == ("symbolic diff: no difference found within 2 s (not a proof)",)
    assert report.mismatches == () and report.found == ()


def test_an_object_argument_is_skipped_with_the_reason(workspace: Workspace,
                                                       isolation: Isolation) -> None:
    """An argument that is not a plain literal skips the diff and says which and why."""
    report = run_child(workspace, isolation, SYMBOLIC, "area",
                       "def area(box):\n    return box.h * box.w\n", limits=LIMITS,
                       symbolic_seconds=2)
    assert report.status == "ok", report.reason
    (note,) = report.notes
    assert note.startswith("symbolic diff skipped: parameter 'box' takes Box objects")


def test_the_search_stops_within_the_cpu_it_has(workspace: Workspace,
                                                isolation: Isolation) -> None:
    """A budget beyond the CPU limit is cut to what is left, so the child still reports."""
    limits = SandboxLimits(cpu_seconds=5, memory_mb=512, wall_seconds=40, processes=4)
    report = run_child(workspace, isolation, SYMBOLIC, "total",
                       "def total(xs):\n    return sum(xs)\n", limits=limits,
                       symbolic_seconds=600)
    assert report.status == "ok", report.reason
    (note,) = report.notes
    match = re.fullmatch(r"symbolic diff: no difference found within ([0-9.]+) s "
                         r"\(not a proof\)", note)
    assert match is not None, note
    assert 0 < float(match.group(1)) < limits.cpu_seconds
