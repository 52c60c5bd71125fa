"""The coverage gate: unexercised candidate code is named, and only the original's own is excused.

The coverage comes from real shadow runs through the jailed sandbox; the gate
(:func:`invariants.proof.unexercised`) is then asked about it exactly as the
daemon asks.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from envelope.isolation import Isolation
from invariants.proof import Unproven, unexercised
from invariants.report import CodeCoverage, ShadowReport
from tests.invariants.shadowkit import Workspace, check_clean, make_workspace

TARGETS = '''
def total(xs):
    if xs is None:
        raise ValueError("no input")
    result = 0
    for x in xs:
        result += x
    return result


def scaled(values, factor):
    out = []
    for v in values:
        out.append(v * factor)
    return out
'''

# Faster, right on every recorded call, wrong when the input meets a rare condition.
RARE_FAULT = '''\
def total(xs):
    if xs is None:
        raise ValueError("no input")
    if len(xs) > 3 and xs[0] == xs[-1]:
        return 0
    return sum(xs)
'''
# A rule-style rewrite: the loop becomes sum(), the untouched None branch is the original's.
KEEPS_BRANCH = '''\
def total(xs):
    if xs is None:
        raise ValueError("no input")
    return sum(xs)
'''
# The same rewrite, but the unexercised branch is changed: no longer the original's code.
CHANGES_BRANCH = KEEPS_BRANCH.replace('"no input"', '"nothing"')
# A pragma must not hide a line from the gate.
PRAGMA = '''\
def scaled(values, factor):
    if factor == 0:  # pragma: no cover
        return [0] * len(values)  # pragma: no cover
    return [v * factor for v in values]
'''


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("proof")
    space = make_workspace(root, "proof_targets", TARGETS)
    space.record("total", [([1, 2, 3],), ([5],), ([],), ([4, 5, 6, 7],)])
    space.record("scaled", [([1, 2], 3), ([], 2)])
    yield space
    check_clean(root)


def original_source(name: str) -> str:
    start = TARGETS.index(f"def {name}(")
    end = TARGETS.find("\n\n\n", start)
    return TARGETS[start:] if end < 0 else TARGETS[start:end + 1]


def judge(space: Workspace, isolation: Isolation, name: str, source: str, *,
          keeps_original: bool) -> tuple[ShadowReport, Unproven | None]:
    report = space.run(isolation, name, source, original_coverage=keeps_original)
    assert report.status == "ok", report.reason
    return report, unexercised(report.coverage, report.original_coverage, source,
                               original_source(name), keeps_original=keeps_original)


def test_a_rare_wrong_branch_no_recorded_call_reaches_is_unproven_and_named(
        workspace: Workspace, isolation: Isolation) -> None:
    """Replay passes the faulty candidate; the gate names its unexercised line and branch."""
    report, gap = judge(workspace, isolation, "total", RARE_FAULT, keeps_original=False)
    assert gap is not None
    assert 5 in gap.lines and (4, 5) in gap.branches
    assert "line" in gap.describe() and "5" in gap.describe()
    assert report.coverage is not None and report.coverage.statements >= 5


def test_a_proposer_claim_is_not_enough_for_new_code(
        workspace: Workspace, isolation: Isolation) -> None:
    """Even a candidate stated to keep the original is unproven where its code is new."""
    _, gap = judge(workspace, isolation, "total", RARE_FAULT, keeps_original=True)
    assert gap is not None and 5 in gap.lines


def test_an_untouched_unexercised_branch_of_the_original_is_excused_for_a_rule(
        workspace: Workspace, isolation: Isolation) -> None:
    """The kept ``raise`` never ran in either code: a rule's rewrite passes the gate."""
    report, gap = judge(workspace, isolation, "total", KEEPS_BRANCH, keeps_original=True)
    assert report.coverage is not None and report.coverage.missing_lines == (3,)
    assert report.original_coverage is not None and 3 in report.original_coverage.missing_lines
    assert gap is None


def test_the_excuse_needs_the_proposers_word_and_the_same_code(
        workspace: Workspace, isolation: Isolation) -> None:
    """Without the claim, or with the branch's code changed, the same gap is unproven."""
    _, unclaimed = judge(workspace, isolation, "total", KEEPS_BRANCH, keeps_original=False)
    assert unclaimed is not None and unclaimed.lines == (3,)
    _, changed = judge(workspace, isolation, "total", CHANGES_BRANCH, keeps_original=True)
    assert changed is not None and changed.lines == (3,) and (2, 3) in changed.branches


def test_a_coverage_pragma_in_the_candidate_hides_nothing(
        workspace: Workspace, isolation: Isolation) -> None:
    """``# pragma: no cover`` does not take a line out of the measurement."""
    _, gap = judge(workspace, isolation, "scaled", PRAGMA, keeps_original=False)
    assert gap is not None and gap.lines == (3,) and (2, 3) in gap.branches


def test_the_original_is_measured_only_when_a_rule_may_need_it(
        workspace: Workspace, isolation: Isolation) -> None:
    """Tracing the original costs time; it is measured only for a keeps-original claim,
    and only when the candidate has a gap the original's coverage could excuse."""
    report, _ = judge(workspace, isolation, "total", KEEPS_BRANCH, keeps_original=False)
    assert report.coverage is not None and report.original_coverage is None
    covered = "def scaled(values, factor):\n    return [v * factor for v in values]\n"
    report, gap = judge(workspace, isolation, "scaled", covered, keeps_original=True)
    assert gap is None and report.coverage is not None and report.coverage.complete
    assert report.original_coverage is None


def test_a_fully_exercised_candidate_passes(workspace: Workspace, isolation: Isolation) -> None:
    """Every line and branch ran: nothing is unproven."""
    source = "def scaled(values, factor):\n    return [v * factor for v in values]\n"
    report, gap = judge(workspace, isolation, "scaled", source, keeps_original=False)
    assert gap is None and report.coverage is not None and report.coverage.complete


def test_no_measurement_is_never_taken_for_proof() -> None:
    """A report without coverage is unproven as a whole, and says so."""
    gap = unexercised(None, None, KEEPS_BRANCH, original_source("total"), keeps_original=True)
    assert gap is not None and not gap.measured and "did not measure" in gap.describe()


def test_an_excused_branch_must_be_missing_in_the_original_too() -> None:
    """Same code, same place, but the original ran that branch: the candidate's gap stands."""
    ran = CodeCoverage(statements=6, missing_lines=(), branches=4, missing_branches=())
    missed = CodeCoverage(statements=3, missing_lines=(3,), branches=2,
                          missing_branches=((2, 3),))
    gap = unexercised(missed, ran, KEEPS_BRANCH, original_source("total"), keeps_original=True)
    assert gap is not None and gap.lines == (3,) and gap.branches == ((2, 3),)
