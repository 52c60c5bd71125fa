"""Candidates that keep state between calls, through the real jailed sandbox and the gate.

A cache makes a candidate look fast in a timing loop that repeats inputs; the
shadow watches the state a call leaves behind and the gate rejects it as
``stateful``, unless the policy lets the target memoise.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from envelope.isolation import Isolation
from invariants.accept import Rejected, decide
from tests.invariants.shadowkit import Workspace, check_clean, make_workspace

TARGETS = '''
LOOKUP = {}


def square_sum(xs):
    total = 0
    for x in xs:
        total += x * x
    return total
'''
CACHING = '''\
def square_sum(xs):
    key = tuple(xs)
    if key not in LOOKUP:
        LOOKUP.setdefault(key, sum(x * x for x in xs))
    return LOOKUP[key]
'''
MEMO_DEFAULT = '''\
def square_sum(xs, _memo={}):
    key = tuple(xs)
    if key not in _memo:
        _memo[key] = sum(x * x for x in xs)
    return _memo[key]
'''
HONEST = "def square_sum(xs):\n    return sum(x * x for x in xs)\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("stateful")
    space = make_workspace(root, "stateful_targets", TARGETS)
    space.record("square_sum", [([1, 2, 3],), ([4],), ([],), ([1, 2, 3],)])
    yield space
    check_clean(root)


@pytest.mark.parametrize("source", [CACHING], ids=["global-cache"])
def test_a_caching_candidate_is_rejected_as_stateful(
        workspace: Workspace, isolation: Isolation, source: str) -> None:
    """Right on every call, but it fills a module global: rejected as stateful, named."""
    report = workspace.run(isolation, "square_sum", source)
    assert report.status == "mismatch" and report.mismatches[0].kind == "stateful", report
    assert "LOOKUP" in report.mismatches[0].actual + report.mismatches[0].expected
    verdict = decide(report, 1.0)
    assert isinstance(verdict, Rejected) and (verdict.stage, verdict.reason) == ("shadow",
                                                                                 "stateful")


def test_memoising_is_allowed_where_the_policy_says_so(
        workspace: Workspace, isolation: Isolation) -> None:
    """With ``memoise`` set for the target, the same cache is no longer a mismatch."""
    report = workspace.run(isolation, "square_sum", CACHING, memoise=True)
    assert report.status == "ok", report.reason


def test_an_honest_candidate_passes_the_state_watch(
        workspace: Workspace, isolation: Isolation) -> None:
    """No state left behind, replayed again in a shuffled order: accepted by the shadow."""
    report = workspace.run(isolation, "square_sum", HONEST)
    assert report.status == "ok", report.reason
    assert report.hash_seeds_checked == (0, 1)
