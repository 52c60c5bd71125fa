"""The guided input search, through the real jailed sandbox: it reaches what replay missed.

A rare wrong branch that no recorded call reaches is found by mutating recorded
inputs with the candidate's own constants; the input that shows it goes back as
a literal, and kept for the target, it rejects the next candidate with the same
fault before any search.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from envelope.isolation import Isolation
from invariants.accept import Rejected, decide
from invariants.search import from_literal, literal
from snapshots.found import add_found, found_path, read_found
from tests.invariants.shadowkit import Workspace, check_clean, make_workspace

TARGETS = '''
def total(xs):
    result = 0
    for x in xs:
        result += x
    return result
'''
# Right on every recorded call; wrong when the list is longer than 3 and starts as it ends.
RARE_FAULT = '''\
def total(xs):
    if len(xs) > 3 and xs[0] == xs[-1]:
        return 0
    return sum(xs)
'''
# The same fault, written another way.
SAME_FAULT = '''\
def total(xs):
    if xs and len(xs) >= 4 and xs[-1] == xs[0]:
        return 0
    return sum(xs)
'''
# A branch nothing recorded reaches, but right: the search reaches it and finds no fault.
RARE_RIGHT = '''\
def total(xs):
    if len(xs) > 3 and xs[0] == xs[-1]:
        return xs[0] + sum(xs[1:])
    return sum(xs)
'''


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("search")
    space = make_workspace(root, "search_targets", TARGETS)
    space.record("total", [([1, 2, 3],), ([5],), ([],), ([4, 5, 6, 7],), ([9, 8],)])
    yield space
    check_clean(root)


def test_the_search_finds_the_input_that_shows_a_rare_fault(
        workspace: Workspace, isolation: Isolation) -> None:
    """Replay passes; the search's input differs, comes back as a literal, and rejects."""
    report = workspace.run(isolation, "total", RARE_FAULT, search_seconds=10.0)
    assert report.status == "mismatch", report.reason
    assert report.mismatches[0].kind == "found" and "input search" in report.reason
    verdict = decide(report, 1.0)
    assert isinstance(verdict, Rejected) and verdict.reason == "counterexample"
    call = from_literal(report.found[-1])
    assert call is not None
    (xs,), _ = call
    assert len(xs) > 3 and xs[0] == xs[-1]


def test_a_kept_input_rejects_the_next_candidate_with_the_same_fault_at_once(
        workspace: Workspace, isolation: Isolation, tmp_path: Path) -> None:
    """With the found input kept for the target, no search time is needed to reject."""
    first = workspace.run(isolation, "total", RARE_FAULT, search_seconds=10.0)
    path = found_path(tmp_path / "corpus", "search_targets:total")
    assert add_found(path, "search_targets:total", first.found) >= 1
    assert read_found(path) == list(dict.fromkeys(first.found))
    report = workspace.run(isolation, "total", SAME_FAULT, search_seconds=0.0,
                           found_path=str(path))
    assert report.status == "mismatch" and report.mismatches[0].kind == "found", report.reason


def test_code_reached_only_by_the_search_counts_as_exercised(
        workspace: Workspace, isolation: Isolation) -> None:
    """A right rare branch is reached: no difference, full coverage, the input kept."""
    without = workspace.run(isolation, "total", RARE_RIGHT)
    assert without.status == "ok" and without.coverage is not None
    assert 3 in without.coverage.missing_lines
    report = workspace.run(isolation, "total", RARE_RIGHT, search_seconds=10.0)
    assert report.status == "ok", report.reason
    assert report.coverage is not None and report.coverage.complete, report.coverage
    assert report.found and any("input search" in note for note in report.notes)


def test_only_plain_data_becomes_a_literal_and_it_reads_back() -> None:
    """Literals round-trip; objects, NaN and malformed text do not pass."""
    call = (([1, "a", (2.5, None)], {"k": True}), {})
    text = literal(((([1, "a", (2.5, None)], {"k": True})), {}))
    assert text is not None and ast.literal_eval(text) == call
    assert from_literal(text) == call
    assert literal(((object(),), {})) is None
    assert literal(((float("nan"),), {})) is None
    assert from_literal("__import__('os')") is None and from_literal("(1, 2)") is None


EXCUSED_TARGETS = '''
def checked_total(xs):
    if xs is None:
        raise ValueError("no input")
    result = 0
    for x in xs:
        result += x
    return result
'''
KEEPS_BRANCH = '''\
def checked_total(xs):
    if xs is None:
        raise ValueError("no input")
    return sum(xs)
'''


def test_the_search_spends_no_time_on_code_the_gate_excuses(
        tmp_path: Path, isolation: Isolation) -> None:
    """A rule's kept, unexercised branch is not searched for; without the claim it is."""
    space = make_workspace(tmp_path, "excused_targets", EXCUSED_TARGETS)
    space.record("checked_total", [([1, 2],), ([],)])
    kept = space.run(isolation, "checked_total", KEEPS_BRANCH, search_seconds=5.0,
                     original_coverage=True)
    assert kept.status == "ok", kept.reason
    assert not any("input search" in note for note in kept.notes), kept.notes
    unclaimed = space.run(isolation, "checked_total", KEEPS_BRANCH, search_seconds=1.0)
    assert unclaimed.status == "ok", unclaimed.reason
    assert any("still unexercised" in note for note in unclaimed.notes), unclaimed.notes
    check_clean(tmp_path)
