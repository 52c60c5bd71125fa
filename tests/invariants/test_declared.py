"""Declared invariants in the real shadow: policy predicates over every compared call."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from envelope.isolation import Isolation
from tests.invariants.shadowkit import Workspace, check_clean, make_workspace

TARGETS = '''
DEFAULTS = {"unit": "ms"}


def settings(overrides):
    if not overrides:
        return DEFAULTS
    return {**DEFAULTS, **overrides}


def total(xs):
    s = 0
    for x in xs:
        s += x
    return s
'''

CHECKS = '''
from declared_targets import DEFAULTS


def shares_defaults(args, kwargs, result):
    return bool(args[0]) or result is DEFAULTS


def non_negative(args, kwargs, result):
    return result >= 0


def explodes(args, kwargs, result):
    raise RuntimeError("boom")


def always(args, kwargs, result):
    return True
'''

SUM = "def total(xs):\n    return sum(xs)\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("declared")
    space = make_workspace(root, "declared_targets", TARGETS, {"declared_checks.py": CHECKS})
    space.record("settings", [({},), ({"unit": "s"},)])
    space.record("total", [([1, 2, 3],), ([4, 5],), ([],)])
    yield space
    check_clean(root)


def test_a_predicate_sees_what_the_comparison_cannot(workspace: Workspace,
                                                     isolation: Isolation) -> None:
    """An equal copy instead of the shared defaults passes the comparison but not the
    declared predicate, which the original satisfies: a mismatch naming the predicate."""
    source = ("def settings(overrides):\n"
              "    return {**DEFAULTS, **overrides} if overrides else dict(DEFAULTS)\n")
    report = workspace.run(isolation, "settings", source,
                           invariants=("declared_checks:shares_defaults",))
    assert report.status == "mismatch", report.reason
    evidence = report.mismatches[0]
    assert evidence.kind == "invariant" and evidence.args_repr == "({})"
    assert "declared_checks:shares_defaults" in evidence.actual
    assert "returned False" in evidence.actual
    assert "it does for the original's result" in evidence.expected


def test_a_predicate_that_fails_on_generated_inputs_is_reported_for_both(
        workspace: Workspace, isolation: Isolation) -> None:
    """Generated negative numbers break a non-negative declaration; the evidence says the
    original breaks it too."""
    report = workspace.run(isolation, "total", SUM, examples=40,
                           invariants=("declared_checks:non_negative",))
    assert report.status == "mismatch", report.reason
    assert report.checks == ("differential", "invariant", "property")
    evidence = report.mismatches[0]
    assert evidence.kind == "invariant" and "fails for the original too" in evidence.expected


def test_a_predicate_that_raises_is_a_mismatch(workspace: Workspace,
                                               isolation: Isolation) -> None:
    """An exception in the predicate counts as the invariant not holding."""
    report = workspace.run(isolation, "total", SUM, invariants=("declared_checks:explodes",))
    assert report.status == "mismatch"
    assert "raised RuntimeError: boom" in report.mismatches[0].actual


def test_a_holding_predicate_is_listed_among_the_checks(workspace: Workspace,
                                                        isolation: Isolation) -> None:
    """A correct candidate that satisfies the predicate passes with the check recorded."""
    report = workspace.run(isolation, "total", SUM, examples=20,
                           invariants=("declared_checks:always",))
    assert report.status == "ok", report.reason
    assert report.checks == ("differential", "invariant", "property", "benchmark")


def test_a_predicate_that_cannot_be_loaded_is_an_error(workspace: Workspace,
                                                       isolation: Isolation) -> None:
    """A declaration naming nothing importable stops the run with the name in the reason."""
    report = workspace.run(isolation, "total", SUM, invariants=("declared_checks:missing",))
    assert report.status == "error"
    assert "declared_checks:missing" in report.reason
