"""Systematic variants: one argument, one field, one boundary changed at a time."""

from __future__ import annotations

import math

from invariants.variants import code_constants, systematic_calls, variants

LINE = '10.0.0.7 - alice [2024-03-01T12:00:05Z] "GET /api HTTP/1.1" 200 5123 18234 sid=9f3a'


def test_each_field_of_a_structured_string_is_replaced_then_trimmed() -> None:
    """Every field is replaced by "x" first, then every field loses its last character,
    then its first: one field at a time."""
    found = variants(LINE)
    fields = LINE.split(" ")
    n = len(fields)

    def edit(index: int, new: str) -> str:
        return " ".join([*fields[:index], new, *fields[index + 1:]])

    assert found[:n] == [edit(i, "x") for i in range(n)]
    assert found[n:2 * n] == [edit(i, field[:-1]) for i, field in enumerate(fields)]
    assert edit(3, fields[3][1:]) in found
    assert LINE not in found and len(found) == len(set(found))


def test_numbers_get_their_boundaries() -> None:
    """An integer is moved by one either way, to zero, minus one and its negation."""
    assert variants(500) == [499, 501, 0, -1, -500]
    assert variants(0) == [-1, 1]
    nan_first = variants(2.5)
    assert nan_first[0] == -2.5 and any(math.isnan(v) for v in nan_first)
    assert variants(True) == [False]


def test_lists_get_the_sizes_real_inputs_reach_and_an_edited_first_element() -> None:
    """Empty, single, duplicated, reversed, large, then the first element varied."""
    found = variants([3, 1, 2])
    assert found[:4] == [[], [3], [3, 3, 1, 2], [2, 1, 3]]
    assert len(found[4]) == 999
    assert [2, 1, 2] in found and [4, 1, 2] in found


def test_tuples_vary_one_position_at_a_time_round_robin() -> None:
    """Each position's first variant comes before any position's second."""
    found = variants(("GET", 200))
    assert found[:2] == [("", 200), ("GET", 199)]


def test_calls_vary_one_argument_and_respect_the_limit() -> None:
    """Each systematic call differs from the first recorded call in one argument only."""
    recorded = [(([4, 5], 900), {"key": "x"})]
    calls = systematic_calls(recorded, 12)
    assert len(calls) == 12
    for args, kwargs in calls:
        changed = [args[0] != [4, 5], args[1] != 900, kwargs != {"key": "x"}]
        assert sum(changed) == 1
    assert systematic_calls([], 10) == [] and systematic_calls(recorded, 0) == []


def classify(status, method):  # type: ignore[no-untyped-def]
    """Where the edges are."""
    if status >= 500:
        return "error"
    return "read" if method in ("GET", "HEAD") else "write"


def test_the_code_s_own_constants_give_the_edges() -> None:
    """Integer literals (largest first) and short strings, folded tuples included."""
    constants = code_constants(classify.__code__, classify.__doc__)
    assert constants.ints == (500,)
    assert set(constants.strs) == {"error", "read", "write", "GET", "HEAD"}


def test_lists_are_cycled_to_the_lengths_at_the_code_s_constants() -> None:
    """A constant 999 in the code gives lists of 998, 999 and 1000 elements."""
    constants = code_constants(compile("x * 999", "<c>", "eval"))
    lengths = [len(found) for found in variants([1, 2, 3], constants)]
    assert {998, 999, 1000} <= set(lengths)


def test_integer_variants_start_at_the_code_s_edges() -> None:
    """With the target's constants, 499, 501 and 500 come before the generic edits."""
    constants = code_constants(classify.__code__, classify.__doc__)
    assert variants(200, constants)[:3] == [499, 501, 500]
    assert "HEAD" in variants("POST", constants)
