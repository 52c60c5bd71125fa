"""The sandbox's symbolic diff: a third child after the replays pass, real CrossHair, real jail.

Candidates go to the sandbox directly (no static gate). Budgets are two or three
seconds of CPU; the search uses all of it unless it exhausts every path.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from envelope.isolation import Isolation
from envelope.sandbox import SandboxLimits, _add_notes
from invariants.accept import Accepted, Rejected, decide
from invariants.report import MAX_NOTES
from tests.invariants.shadowkit import Workspace, check_clean, make_workspace

TARGET = '''
def scale(x):
    return x * 3 + 1
'''

RARE = "def scale(x):\n    if x == 7919:\n        return 0\n    return x * 3 + 1\n"
SAME = "def scale(x):\n    return x + x + x + 1\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """A target and a corpus of calls that never reach 7919."""
    workspace = make_workspace(tmp_path, "sbxsym", TARGET)
    workspace.record("scale", [(1,), (5,), (-3,), (100,)])
    yield workspace
    check_clean(workspace.root)


def test_a_rare_branch_the_corpus_misses_is_rejected_with_the_input(
        workspace: Workspace, isolation: Isolation) -> None:
    """Replay passes the candidate; the symbolic diff finds 7919 and the report rejects it."""
    replayed = workspace.run(isolation, "scale", RARE)
    assert replayed.status == "ok", replayed.reason
    report = workspace.run(isolation, "scale", RARE, symbolic_seconds=2)
    assert report.status == "mismatch", report.reason
    (mismatch,) = report.mismatches
    assert (mismatch.kind, mismatch.expected, mismatch.actual) == ("symbolic", "23758", "0")
    assert [ast.literal_eval(text) for text in report.found] == [((7919,), {})]
    assert report.original_times == () and report.hash_seeds_checked == (0, 1)
    verdict = decide(report, 1.0)
    assert isinstance(verdict, Rejected), verdict


def test_an_equivalent_candidate_keeps_its_result_and_gets_the_note(
        workspace: Workspace, isolation: Isolation) -> None:
    """No difference within the budget: the replays' report stands, with one more note."""
    report = workspace.run(isolation, "scale", SAME, repeats=5, symbolic_seconds=2)
    assert report.status == "ok", report.reason
    assert report.notes[-1] == "symbolic diff: no difference found within 2 s (not a proof)"
    assert report.checks == ("differential", "benchmark")
    assert len(report.original_times) == len(report.candidate_times) == 5
    assert isinstance(decide(report, 0.0), Accepted)


def test_the_cpu_limit_is_raised_to_cover_the_budget(workspace: Workspace,
                                                     isolation: Isolation) -> None:
    """A budget above the policy's CPU limit is searched in full, not cut to the limit."""
    limits = SandboxLimits(cpu_seconds=3, memory_mb=512, wall_seconds=20)
    report = workspace.run(isolation, "scale", SAME, limits=limits, symbolic_seconds=4)
    assert report.status == "ok", report.reason
    assert report.notes[-1] == "symbolic diff: no difference found within 4 s (not a proof)"


def test_a_crash_of_the_symbolic_child_is_a_note_not_a_rejection(
        workspace: Workspace, isolation: Isolation) -> None:
    """A child that dies under CrossHair leaves the candidate as the replays judged it."""
    source = ("def scale(x):\n    if x == 7919:\n        import os\n        os._exit(3)\n"
              "    return x * 3 + 1\n")
    report = workspace.run(isolation, "scale", source, symbolic_seconds=2)
    assert report.status == "ok", report.reason
    assert report.notes[-1].startswith("symbolic diff did not finish (crashed): exit status 3")


def test_a_timeout_of_the_symbolic_child_is_a_note_not_a_rejection(
        workspace: Workspace, isolation: Isolation) -> None:
    """A child that blocks past its deadline is killed and noted, not held against the candidate."""
    source = ("def scale(x):\n    if x == 7919:\n        import _thread\n"
              "        lock = _thread.allocate_lock()\n        lock.acquire()\n"
              "        lock.acquire(True, 600)\n    return x * 3 + 1\n")
    limits = SandboxLimits(cpu_seconds=10, memory_mb=512, wall_seconds=5)
    report = workspace.run(isolation, "scale", source, limits=limits, symbolic_seconds=2)
    assert report.status == "ok", report.reason
    assert report.notes[-1].startswith("symbolic diff did not finish (timeout): wall-clock "
                                       "deadline of 7 s passed")


def test_notes_stay_within_the_report_bound() -> None:
    """Added notes keep a report's notes within MAX_NOTES, dropping the oldest."""
    notes = _add_notes([f"old {i}" for i in range(MAX_NOTES)], ["symbolic"])
    assert notes == (*[f"old {i}" for i in range(1, MAX_NOTES)], "symbolic")
