"""The loop-idiom rules seen on service code (nested dedupe, membership-only lists, nested
sums, flushed string buffers, list queues) through the proposer, beyond their fixtures."""

from __future__ import annotations

import functools
import textwrap
import types
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.synthesis.base import Candidate, ProposalRequest
from daemon.synthesis.rules import RulesProposer

TOKENIZE_AND_WALK = textwrap.dedent("""\
    def outline(text, links):
        names = []
        name = ""
        for ch in text:
            if ch == ",":
                if name:
                    names.append(name)
                name = ""
            else:
                name += ch
        if name:
            names.append(name)
        order = []
        seen = []
        queue = [n for n in names]
        while queue:
            node = queue.pop(0)
            if node in seen:
                continue
            seen.append(node)
            order.append(node)
            queue.extend(links.get(node, ()))
        return order
    """)


def propose(source: str, allowed: tuple[str, ...] = ("collections",)) -> list[Candidate]:
    request = ProposalRequest(target="svc.outline:outline", source=source,
                              allowed_imports=allowed)
    return RulesProposer().propose(request)


def function_of(source: str) -> types.FunctionType:
    namespace: dict[str, Any] = {}
    exec(compile(source, "<candidate>", "exec", dont_inherit=True), namespace)
    (fn,) = [v for v in namespace.values() if isinstance(v, types.FunctionType)]
    return fn


@functools.cache
def candidates_of_example() -> list[tuple[str, types.FunctionType]]:
    return [(c.origin, function_of(c.source)) for c in propose(TOKENIZE_AND_WALK)]


def test_rules_compose_on_a_tokenizer_feeding_a_walk() -> None:
    """The buffer, membership-list and queue rules all apply to one function, composed first."""
    composed = propose(TOKENIZE_AND_WALK)[0]
    assert composed.origin == "rules:seen-list-to-set+string-buffer-join+list-queue-to-deque"
    assert "deque(" in composed.source and "seen = set()" in composed.source


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet="ab,", max_size=12),
       links=st.dictionaries(st.sampled_from(["a", "b", "ab"]),
                             st.lists(st.sampled_from(["a", "b", "ba"]), max_size=3)))
def test_every_candidate_walks_like_the_original(text: str, links: dict[str, list[str]]) -> None:
    """Each candidate for the composed example returns what the original returns."""
    original = function_of(TOKENIZE_AND_WALK)
    for origin, candidate in candidates_of_example():
        assert candidate(text, links) == original(text, links), origin


def test_deque_rule_needs_collections_to_be_allowed() -> None:
    """Without ``collections`` in the policy's allowed imports the queue stays a list."""
    origins = [c.origin for c in propose(TOKENIZE_AND_WALK, allowed=())]
    assert origins and not any("list-queue-to-deque" in o for o in origins)


def test_set_backed_rules_rely_on_hashable_items() -> None:
    """Unhashable items make the rewrite raise where the list worked: a difference the
    gate's replay reports, which is why hashability is a stated runtime precondition."""
    source = textwrap.dedent("""\
        def merged(rows):
            seen = []
            out = []
            for row in rows:
                if row not in seen:
                    seen.append(row)
                    out.append(row)
            return out
        """)
    (candidate,) = propose(source)
    assert candidate.origin == "rules:seen-list-to-set"
    assert function_of(source)([[1], [1], [2]]) == [[1], [2]]
    with pytest.raises(TypeError):
        function_of(candidate.source)([[1], [1], [2]])


def test_buffer_read_only_after_the_loop_is_left_to_string_concat_join() -> None:
    """A buffer never flushed in its loop gets the region rewrite, not the flush rewrite."""
    source = textwrap.dedent("""\
        def slug(title):
            out = ""
            for ch in title.lower():
                if ch.isalnum():
                    out += ch
            return out
        """)
    origins = [c.origin for c in propose(source)]
    assert "rules:string-concat-join" in origins
    assert not any("string-buffer-join" in o for o in origins)


def test_single_nested_loop_sum_is_left_to_manual_sum() -> None:
    """One loop is manual-sum's; nested-sum only takes two or more."""
    source = textwrap.dedent("""\
        def total(values):
            total = 0
            for v in values:
                total += v
            return total
        """)
    assert [c.origin for c in propose(source)] == ["rules:manual-sum"]
