"""Outcome comparison: every pitfall of "equal" that a wrong candidate could slip through."""

from __future__ import annotations

import collections
import decimal
import math
import os

import pytest

from invariants.canonical import Uncomparable, alias_paths, fingerprint, same
from invariants.compare import ITERATOR, RAISE, RETURN, Outcome, compare_outcomes
from invariants.render import call_repr, safe_repr
from invariants.replay import call


def returned(value: object, **fields: object) -> Outcome:
    return Outcome(RETURN, value=value, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("left", "right"), [
    (1, 1.0), (1, True), (1.0, True), (0, False), (0, None), ("1", 1), (b"a", "a"),
    ([1], (1,)), ({1}, frozenset({1})), ({"a": 1}, collections.OrderedDict(a=1)),
])
def test_types_are_strict(left: object, right: object) -> None:
    """Values equal under == but of different types are different outcomes."""
    assert not same(left, right)
    assert compare_outcomes(returned(left), returned(right)) is not None


def test_nan_equals_nan_in_the_same_position() -> None:
    """NaN matches NaN (also inside containers), though NaN != NaN in Python."""
    assert same(float("nan"), float("nan"))
    assert same([1.0, math.nan], [1.0, float("nan")])
    assert not same([math.nan, 1.0], [1.0, math.nan])


def test_negative_zero_differs_from_zero() -> None:
    """-0.0 and 0.0 are different results (they print and divide differently)."""
    assert not same(-0.0, 0.0)
    assert not same(complex(0.0, -0.0), complex(0.0, 0.0))
    assert same(-0.0, -0.0)


def test_nested_containers_compare_recursively() -> None:
    """A difference deep inside nested containers is found."""
    deep = {"a": [1, (2, {"b": [3, 4]})]}
    assert same(deep, {"a": [1, (2, {"b": [3, 4]})]})
    assert not same(deep, {"a": [1, (2, {"b": [3, 5]})]})
    assert not same(deep, {"a": [1, (2, {"b": [3, 4.0]})]})


def test_dict_key_order_is_behaviour() -> None:
    """Dicts with the same items in another insertion order differ (iteration shows it)."""
    assert not same({"a": 1, "b": 2}, {"b": 2, "a": 1})


def test_sets_ignore_order_but_not_element_types() -> None:
    """Sets match regardless of construction order, but {1} and {1.0} differ."""
    assert same({3, 1, 2}, {1, 2, 3})
    assert same(frozenset({"x", "y"}), frozenset({"y", "x"}))
    assert not same({1}, {1.0})


def test_shared_references_and_cycles() -> None:
    """[row, row] differs from [row, copy]; self-referencing structures terminate."""
    row = [1]
    assert not same([row, row], [row, [1]])
    loop: list[object] = []
    loop.append(loop)
    other: list[object] = []
    other.append(other)
    assert same(loop, other)


def test_exceptions_compare_by_type_and_message() -> None:
    """A different exception type or message is a mismatch; the same one is not."""
    def raised(exc_type: str, message: str) -> Outcome:
        return Outcome(RAISE, exc_type=exc_type, exc_message=message)

    assert compare_outcomes(raised("ValueError", "bad"), raised("ValueError", "bad")) is None
    assert compare_outcomes(raised("ValueError", "bad"), raised("TypeError", "bad")).kind \
        == "exception"  # type: ignore[union-attr]
    assert compare_outcomes(raised("ValueError", "bad"), raised("ValueError", "worse")).kind \
        == "exception"  # type: ignore[union-attr]
    assert compare_outcomes(raised("ValueError", "x"), returned(None)).kind \
        == "outcome"  # type: ignore[union-attr]


def test_argument_mutation_is_behaviour() -> None:
    """A candidate that sorts its input in place where the original copied it differs."""
    def original(xs: list[int]) -> list[int]:
        return sorted(xs)

    def candidate(xs: list[int]) -> list[int]:
        xs.sort()
        return list(xs)

    difference = compare_outcomes(call(original, ([3, 1, 2],), {}),
                                  call(candidate, ([3, 1, 2],), {}))
    assert difference is not None and difference.kind == "mutation"


def test_returning_an_alias_of_the_input_is_behaviour() -> None:
    """Returning the argument itself versus a copy of it is a mismatch."""
    def original(xs: list[int]) -> list[int]:
        return xs

    def candidate(xs: list[int]) -> list[int]:
        return list(xs)

    difference = compare_outcomes(call(original, ([1, 2],), {}), call(candidate, ([1, 2],), {}))
    assert difference is not None and difference.kind == "alias"
    assert "args[0]" in difference.expected


def test_alias_paths_find_nested_identity() -> None:
    """A result that contains an argument's inner list is traced to it."""
    inner = [1]
    outer = [inner, [2]]
    assert alias_paths({"k": inner}, (outer,), {}) == (("result['k']", "args[0][0]"),)
    assert alias_paths([1, 2], ([1, 2],), {}) == ()


def test_generators_are_materialised() -> None:
    """A generator is compared by what it yields, including an exception part-way."""
    def gen(n: int):  # type: ignore[no-untyped-def]
        yield from range(n)

    def gen_then_fail(n: int):  # type: ignore[no-untyped-def]
        yield from range(n)
        raise ValueError("done")

    first, second = call(gen, (3,), {}), call(gen, (3,), {})
    assert first.kind == ITERATOR and first.value == (0, 1, 2)
    assert compare_outcomes(first, second) is None
    assert compare_outcomes(first, call(gen, (4,), {})).kind == "iterator"  # type: ignore[union-attr]
    assert compare_outcomes(first, call(gen_then_fail, (3,), {})).kind \
        == "iterator"  # type: ignore[union-attr]
    assert compare_outcomes(first, call(lambda n: [0, 1, 2], (3,), {})).kind \
        == "outcome"  # type: ignore[union-attr]


def test_unbounded_iterators_are_cut_at_the_bound() -> None:
    """An infinite generator is materialised up to the bound and marked truncated."""
    import itertools

    outcome = call(itertools.count, (), {})
    assert outcome.kind == ITERATOR and outcome.truncated and len(outcome.value) == 10_000


def test_printed_output_is_behaviour() -> None:
    """Printing something else (or nothing) is a mismatch even with the same result."""
    def loud(x: int) -> int:
        print("value", x)
        return x

    def quiet(x: int) -> int:
        return x

    assert call(loud, (1,), {}).stdout == "value 1\n"
    difference = compare_outcomes(call(loud, (1,), {}), call(quiet, (1,), {}))
    assert difference is not None and difference.kind == "output"


class Hostile:
    """A returned object whose dunders lie, raise, or have side effects."""

    calls: list[str] = []

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        Hostile.calls.append("eq")
        return True

    def __ne__(self, other: object) -> bool:
        Hostile.calls.append("ne")
        return False

    def __hash__(self) -> int:
        Hostile.calls.append("hash")
        return 0

    def __repr__(self) -> str:
        Hostile.calls.append("repr")
        raise RuntimeError("repr")

    def __getattribute__(self, name: str) -> object:
        if name != "__dict__":
            Hostile.calls.append(f"getattr {name}")
        return object.__getattribute__(self, name)


def test_a_hostile_eq_is_not_trusted() -> None:
    """An __eq__ that always says True does not make different objects equal, and never runs."""
    one, two, three = Hostile(1), Hostile(2), Hostile(3)
    in_sets = ({Hostile(1)}, {Hostile(2)})
    Hostile.calls.clear()
    assert not same(one, two)
    assert same(one, Hostile(1))
    assert not same([one], [two])
    assert not same(*in_sets)
    assert safe_repr(three).endswith("Hostile(value=3)")
    assert Hostile.calls == []


def test_a_raising_eq_or_class_property_does_not_break_comparison() -> None:
    """__eq__ that raises, or a __class__ property that lies, is neither called nor believed."""
    class Liar:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("eq")

        @property  # type: ignore[misc]
        def __class__(self) -> type:
            raise RuntimeError("class")

    assert same(Liar(), Liar())
    assert not same(Liar(), 1)
    difference = compare_outcomes(returned(Liar()), returned([]))
    assert difference is not None and difference.kind == "value"


def test_a_candidate_defined_exception_str_is_not_called() -> None:
    """An exception class made inside the candidate is rendered from its args, not its __str__."""
    class Loud(Exception):
        def __str__(self) -> str:
            raise RuntimeError("side effect")

    def boom() -> None:
        raise Loud("quiet")

    outcome = call(boom, (), {})
    assert outcome.kind == RAISE and outcome.exc_message == "quiet"
    assert outcome.exc_type is not None and outcome.exc_type.endswith("Loud")


def test_exception_messages_match_what_str_gives_for_builtin_types() -> None:
    """Messages equal str(exc) for builtin exceptions, as a recorder stores them."""
    assert call(lambda: {}["k"], (), {}).exc_message == str(KeyError("k"))
    assert call(os.stat, ("/nonexistent/x",), {}).exc_message \
        == "[Errno 2] No such file or directory: '/nonexistent/x'"
    assert call(lambda: int("x"), (), {}).exc_message == str(ValueError(
        "invalid literal for int() with base 10: 'x'"))


def test_exception_args_that_are_objects_are_not_asked_for_their_str() -> None:
    """An exception carrying an arbitrary object is rendered from its structure."""
    class Payload:
        def __str__(self) -> str:
            raise RuntimeError("side effect")

    def boom() -> None:
        raise ValueError(Payload())

    assert "Payload" in call(boom, (), {}).exc_message  # type: ignore[operator]


def test_stdlib_value_types_compare_by_their_complete_repr() -> None:
    """Decimal('1.0') and Decimal('1.00') are equal numbers but different results."""
    assert not same(decimal.Decimal("1.0"), decimal.Decimal("1.00"))
    assert same(decimal.Decimal("1.0"), decimal.Decimal("1.0"))


def test_fingerprint_is_stable_and_discriminating() -> None:
    """Equal values share a fingerprint; a small difference changes it."""
    assert fingerprint({"a": [1, 2.5]}) == fingerprint({"a": [1, 2.5]})
    assert fingerprint({"a": [1, 2.5]}) != fingerprint({"a": [1, 2.50001]})


def test_too_deep_values_are_uncomparable_not_equal() -> None:
    """A structure deeper than the bound is reported as uncomparable, never as a match."""
    deep: list[object] = []
    node = deep
    for _ in range(2000):
        child: list[object] = []
        node.append(child)
        node = child
    with pytest.raises(Uncomparable):
        same(deep, deep)
    assert compare_outcomes(returned(deep), returned(deep)).kind \
        == "uncomparable"  # type: ignore[union-attr]


def test_evidence_renderings_are_bounded_and_python_like() -> None:
    """Renderings look like Python, stay within their limit and survive cycles and huge ints."""
    assert safe_repr([1, (2,), {"k": {3}}, frozenset(), None, b"x"]) == \
        "[1, (2,), {'k': {3}}, frozenset(), None, b'x']"
    assert len(safe_repr(list(range(10**5)), 50)) == 50
    assert safe_repr(10**5000) == "<int of 16610 bits>"
    loop: list[object] = []
    loop.append(loop)
    assert "…" in safe_repr(loop, 40)
    assert call_repr(([3, 1],), {"key": None}) == "([3, 1], key=None)"
    assert safe_repr(collections.OrderedDict(a=1)) == "collections.OrderedDict({'a': 1})"
