"""Equivalence: every before/after fixture pair behaves the same on inputs that meet the
rule's runtime preconditions.

Both functions run in fresh namespaces on deep copies of the same generated
arguments; the outcome compared is the returned value with the type of every
part of it (floats by ``repr``, so ``nan`` and ``-0.0`` count), or the type of
the exception raised, together with the arguments as the call left them.
"""

from __future__ import annotations

import functools
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.daemon.synthesis.outcomes import outcome

FIXTURES = Path(__file__).parent / "fixtures"

ints = st.integers(-30, 30)
words = st.text(alphabet="ab-/1", max_size=4)
# hashable values whose equality agrees with their hash, some of them equal across types
hashables = st.one_of(ints, words, st.booleans(), st.none(),
                      st.floats(allow_nan=True, allow_infinity=True),
                      st.tuples(ints, words))
numbers = st.one_of(ints, st.floats(allow_nan=True, allow_infinity=True))


def args(*strategies: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.tuples(*strategies)


def records(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[list[types.SimpleNamespace]]:
    return st.lists(st.builds(types.SimpleNamespace, **fields), max_size=8)


INPUTS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "quadratic-dedupe/basic": args(st.lists(hashables, max_size=12)),
    "quadratic-dedupe/attribute": args(records(user=words), ints),
    "quadratic-dedupe/one_line": args(st.lists(st.tuples(hashables, ints), max_size=10)),
    "quadratic-dedupe/seen_taken": args(st.lists(hashables, max_size=10), st.lists(ints)),
    "append-to-comprehension/basic": args(st.lists(st.one_of(ints, words), max_size=8)),
    "append-to-comprehension/guarded": args(st.lists(ints, max_size=8), ints),
    "append-to-comprehension/nested": args(st.lists(st.lists(ints, max_size=4), max_size=5),
                                           ints),
    "append-to-comprehension/conditional_element": args(st.text(alphabet="ab12/", max_size=12)),
    "append-to-comprehension/loop_var_rebound": args(st.lists(ints), st.lists(ints)),
    "list-literal-membership/basic": args(st.one_of(
        st.sampled_from(["GET", "HEAD", "OPTIONS", "POST", "get"]), words)),
    "list-literal-membership/tuple_not_in": args(st.lists(st.one_of(
        ints, st.none(), st.booleans(), st.binary(max_size=1), st.sampled_from(["yz", "y"])),
        max_size=8)),
    "list-literal-membership/spaced": args(st.one_of(ints.map(lambda n: n * 10), st.booleans())),
    "keys-membership/basic": args(st.dictionaries(hashables, ints, max_size=5),
                                  st.lists(hashables, max_size=6)),
    "keys-membership/call_receiver": args(
        st.dictionaries(ints, ints, max_size=5).map(lambda d: (lambda: d)), ints),
    "string-concat-join/basic": args(st.lists(words, max_size=8)),
    "string-concat-join/report": args(words, st.lists(st.tuples(words, st.one_of(ints, words)),
                                                      max_size=5), words),
    "string-concat-join/annotated": args(st.lists(words, max_size=5), st.integers(0, 3)),
    "string-concat-join/jump_ends_region": args(st.lists(st.lists(words, max_size=3),
                                                         max_size=4)),
    "dict-get-counting/basic": args(st.one_of(st.lists(hashables, max_size=12),
                                              st.dictionaries(hashables, ints, max_size=4))),
    "dict-get-counting/temp_key": args(st.lists(st.tuples(words, words), max_size=10)),
    "dict-get-counting/if_else": args(st.lists(st.tuples(hashables, words), max_size=10)),
    "dict-get-counting/not_in_subscript": args(st.lists(st.tuples(hashables, ints), max_size=10)),
    # runtime preconditions: non-empty, equal elements indistinguishable
    "sorted-index-to-min-max/basic": args(st.one_of(st.lists(ints, min_size=1),
                                                    st.lists(words, min_size=1))),
    "sorted-index-to-min-max/key_first": args(st.lists(st.tuples(words, ints), min_size=1)),
    "sorted-index-to-min-max/reverse": args(st.lists(words, min_size=1)),
    "range-len-to-enumerate/drop_index": args(st.lists(ints, max_size=8), ints),
    "range-len-to-enumerate/keep_index": args(st.lists(ints, max_size=8)),
    "range-len-to-enumerate/nested_subscript": args(st.lists(st.tuples(ints, st.integers(
        100, 599)), max_size=8)),
    "range-len-to-enumerate/index_after": args(st.one_of(st.lists(hashables, max_size=6),
                                                         words)),
    # runtime precondition: plain addition (ints; floats only on 3.11, so left out)
    "manual-sum/basic": args(st.lists(st.one_of(ints, st.booleans()), max_size=10)),
    "manual-sum/guarded_count": args(st.lists(st.integers(100, 599), max_size=10)),
    "manual-sum/expression": args(st.lists(st.tuples(ints, ints), max_size=10)),
    # the fold is exact for any comparable items, nan and mixed int/float ties included
    "manual-min-max/fold": args(st.lists(numbers, max_size=8)),
    "manual-min-max/none_start": args(st.lists(numbers, max_size=8)),
    "manual-min-max/reflected_attribute": args(records(latency=numbers), numbers),
    "manual-min-max/builtin_call": args(st.lists(numbers, max_size=8), numbers),
    "any-all/any": args(st.lists(ints, max_size=8), ints),
    "any-all/all": args(st.lists(words, max_size=6), st.text(alphabet="ab", max_size=2)),
    "any-all/not_any": args(st.lists(st.tuples(ints, ints), max_size=6)),
    "any-all/truthy": args(st.lists(st.one_of(ints, words, st.none(), st.lists(ints,
                                                                               max_size=1)),
                                    max_size=6)),
    "hoist-sort-from-loop/assigned": args(st.lists(ints, max_size=10), st.lists(
        st.tuples(words, st.integers(0, 1000)), max_size=5)),
    "hoist-sort-from-loop/inline": args(st.lists(ints, max_size=8), st.lists(ints, max_size=6)),
    "hoist-sort-from-loop/comprehension_element": args(
        st.lists(ints, max_size=8), st.lists(st.lists(ints, max_size=4), max_size=4)),
    "hoist-sort-from-loop/while_key": args(st.lists(words, max_size=6), st.integers(0, 5)),
    "loop-membership-to-set/local_list": args(st.lists(st.sampled_from(
        ["root", "alice", "bob", "svc-a", "eve", ""]), max_size=8)),
    "loop-membership-to-set/annotated_parameter": args(st.lists(words, max_size=8),
                                                       st.lists(words, max_size=4)),
    "hoist-method-lookup/dict_get": args(st.lists(hashables, max_size=8)),
    "hoist-method-lookup/reuse": args(hashables, st.lists(hashables, max_size=5),
                                      st.lists(hashables, max_size=5)),
    "hoist-method-lookup/grouping": args(st.lists(st.tuples(hashables, ints), max_size=6)),
    "any-all/all_in": args(st.lists(ints, max_size=6), st.lists(ints, max_size=6)),
    # runtime precondition of the set-backed rules: hashable items, as for quadratic-dedupe
    "nested-dedupe/healthy_hosts": args(records(status=st.sampled_from(["ok", "down"]),
                                                host=words), st.lists(words, max_size=3)),
    "nested-dedupe/tags_per_batch": args(st.lists(st.lists(st.lists(hashables, max_size=4),
                                                           max_size=3), max_size=3),
                                         st.integers(0, 6)),
    "nested-dedupe/counted_dupes": args(st.lists(hashables, max_size=8),
                                        st.lists(hashables, max_size=8)),
    "seen-list-to-set/merge_events": args(records(id=hashables), records(id=hashables)),
    "seen-list-to-set/per_page": args(st.lists(st.tuples(words, st.lists(words, max_size=6)),
                                               max_size=4)),
    # plain addition, as for manual-sum: ints and bools
    "nested-sum/invoice_total": args(records(paid=st.booleans(), lines=records(
        qty=st.integers(0, 5), unit_cents=ints))),
    "nested-sum/matrix": args(st.lists(st.lists(st.one_of(ints, st.booleans()), max_size=4),
                                       max_size=4)),
    "nested-sum/window_hits": args(st.lists(st.dictionaries(words, st.lists(
        st.integers(100, 599), max_size=4), max_size=3), max_size=3), st.integers(0, 3)),
    "list-queue-to-deque/reachable": args(st.dictionaries(st.integers(0, 6), st.lists(
        st.integers(0, 6), max_size=3), max_size=7), st.integers(0, 6)),
    "list-queue-to-deque/install_order": args(st.dictionaries(st.sampled_from("abcdef"), st.lists(
        st.sampled_from("abcdef"), max_size=3), max_size=6)),
    # the org chart may loop; the depth bound keeps the walk finite
    "list-queue-to-deque/levels": args(st.dictionaries(st.sampled_from("abcd"), st.lists(
        st.sampled_from("abcd"), max_size=3), max_size=4), st.sampled_from("abcd"),
        st.integers(0, 4)),
    # runtime precondition: the pieces are str (characters of a str, here)
    "string-buffer-join/words": args(st.text(alphabet="ab \t\n", max_size=16)),
    "string-buffer-join/csv_fields": args(st.text(alphabet='ab ,;"', max_size=16),
                                          st.sampled_from([",", ";", "a"])),
    "string-buffer-join/template_lexer": args(st.text(alphabet="ab {}", max_size=16)),
}


@functools.cache
def load(path: Path) -> types.FunctionType:
    namespace: dict[str, Any] = {}
    exec(compile(path.read_text(), str(path), "exec", dont_inherit=True), namespace)
    functions = [v for v in namespace.values() if isinstance(v, types.FunctionType)]
    assert len(functions) == 1
    return functions[0]


CASES: dict[str, Path] = {f"{p.parent.name}/{p.name.removesuffix('.before.py')}": p
                          for p in sorted(FIXTURES.glob("*/*.before.py"))}


def test_every_fixture_pair_has_inputs() -> None:
    """Each before/after pair has an input strategy here, so none escapes the property."""
    assert set(CASES) == set(INPUTS)


@pytest.mark.parametrize("case", sorted(CASES))
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_rewrite_behaves_like_the_original(case: str, data: st.DataObject) -> None:
    """On inputs meeting the rule's runtime preconditions, before and after agree exactly."""
    before = CASES[case]
    after = before.with_name(before.name.replace(".before.py", ".after.py"))
    arguments = data.draw(INPUTS[case], label="arguments")
    assert outcome(load(after), arguments) == outcome(load(before), arguments)
