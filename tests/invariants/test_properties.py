"""Property checks in the real shadow: generated inputs catch what the recorded calls miss."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from envelope.isolation import Isolation
from invariants.accept import Rejected, decide
from invariants.properties import IMPURE_NOTE
from tests.invariants.shadowkit import Workspace, check_clean, make_workspace

TARGETS = '''
def dedupe(items):
    seen = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def top(values, k):
    if k < 0:
        raise ValueError("k must not be negative")
    ordered = sorted(values)
    ordered.reverse()
    return ordered[:k]


def total(xs):
    s = 0
    for x in xs:
        s += x
    return s
'''

# Recorded inputs that never hold a duplicate, a negative k or a long list.
CORPORA = {
    "dedupe": [([1, 2, 3],), ([4, 5],), (["a", "b"],)],
    "top": [([5, 1, 3], 2), ([9, 7], 1), ([2, 8, 4, 6], 3)],
    "total": [([1, 2, 3],), ([4],), ([5, 6],)],
}
NO_DUPLICATES = "def dedupe(items):\n    return list(items)\n"
SLOW_WHEN_LONG = ("def total(xs):\n"
                  "    if len(xs) > 40:\n"
                  "        waste = 0\n"
                  "        for i in range(6_000_000):\n"
                  "            waste += i\n"
                  "    return sum(xs)\n")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("properties")
    space = make_workspace(root, "property_targets", TARGETS)
    for name, calls in CORPORA.items():
        space.record(name, calls)
    yield space
    check_clean(root)
    assert not (root / ".hypothesis").exists()


def test_a_candidate_wrong_only_off_the_corpus_is_a_property_mismatch(
        workspace: Workspace, isolation: Isolation) -> None:
    """Dropping deduplication passes every recorded call but fails on generated duplicates."""
    report = workspace.run(isolation, "dedupe", NO_DUPLICATES, examples=50)
    assert report.status == "mismatch", report.reason
    assert report.reason.startswith("property check:")
    assert report.checks == ("differential", "property") and report.examples > 0
    evidence = report.mismatches[0]
    assert evidence.kind == "property" and evidence.expected != evidence.actual
    assert evidence.args_repr.startswith("([")
    verdict = decide(report, 1.0)
    assert isinstance(verdict, Rejected) and verdict.reason == "mismatch"
    assert "property" in verdict.detail


def test_without_generated_inputs_the_same_candidate_would_pass(
        workspace: Workspace, isolation: Isolation) -> None:
    """With examples at 0 the recorded calls alone accept it: the property check is what
    catches it, and the report says the check was skipped."""
    report = workspace.run(isolation, "dedupe", NO_DUPLICATES, examples=0)
    assert report.status == "ok", report.reason
    assert "property" not in report.checks and report.examples == 0
    assert any("examples" in note for note in report.notes)


def test_the_evidence_is_reproducible(workspace: Workspace, isolation: Isolation) -> None:
    """Generation is seeded: two runs of the same job report the same failing inputs."""
    first = workspace.run(isolation, "dedupe", NO_DUPLICATES, examples=30, property_seed=7)
    second = workspace.run(isolation, "dedupe", NO_DUPLICATES, examples=30, property_seed=7)
    assert first.mismatches == second.mismatches and first.reason == second.reason


def test_inputs_on_which_the_original_raises_compare_the_exception(
        workspace: Workspace, isolation: Isolation) -> None:
    """A negative k (never recorded) raises in the original: the same exception passes,
    another message is a property mismatch."""
    same = ("def top(values, k):\n"
            "    if k < 0:\n"
            "        raise ValueError('k must not be negative')\n"
            "    return sorted(values, reverse=True)[:k]\n")
    report = workspace.run(isolation, "top", same, examples=60)
    assert report.status == "ok", report.reason
    assert report.checks == ("differential", "property", "benchmark")
    assert report.examples > 20
    other = same.replace("k must not be negative", "negative k")
    report = workspace.run(isolation, "top", other, examples=60)
    assert report.status == "mismatch", report.reason
    evidence = report.mismatches[0]
    assert evidence.kind == "property"
    assert "k must not be negative" in evidence.expected and "negative k" in evidence.actual


def test_a_candidate_slow_on_large_generated_inputs_misses_the_deadline(
        workspace: Workspace, isolation: Isolation) -> None:
    """Millions of wasted steps on long lists exceed the per-example deadline the original
    meets with ease: a property mismatch that names the deadline."""
    report = workspace.run(isolation, "total", SLOW_WHEN_LONG, examples=50, deadline_ms=50)
    assert report.status == "mismatch", report.reason
    assert "deadline" in report.reason
    assert "50 ms deadline" in report.mismatches[0].expected


def test_an_impure_target_is_only_replayed_and_the_report_says_so(
        workspace: Workspace, isolation: Isolation) -> None:
    """A target the policy marks impure gets no generated inputs; a note says why."""
    report = workspace.run(isolation, "dedupe", NO_DUPLICATES, examples=50, impure=True)
    assert report.status == "ok", report.reason
    assert "property" not in report.checks and report.examples == 0
    assert report.notes == (IMPURE_NOTE,)
