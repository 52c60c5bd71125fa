"""Which argument types the symbolic diff takes: from annotations, else from recorded calls."""

from __future__ import annotations

from typing import Any

from invariants.plaintypes import Fitted, Unfitted, parameter_types


def calls(*recorded: tuple[tuple[Any, ...], dict[str, Any]]) -> list[Any]:
    """Argument loaders as a corpus gives them, one per recorded call."""
    return [lambda call=call: call for call in recorded]


def test_complete_plain_annotations_are_used_without_calls() -> None:
    """Annotated parameters of plain types need no recorded call."""
    def f(x: int, names: list[str], table: dict[str, float] | None) -> int:
        return x

    assert parameter_types(f, []) == Fitted({"x": int, "names": list[str],
                                             "table": dict[str, float] | None})


def test_unannotated_parameters_are_inferred_from_the_calls() -> None:
    """What the calls passed, defaults included, joins into one type per parameter."""
    def f(a, items, flag=None):
        return a

    fit = parameter_types(f, calls(((1, [1, 2]), {}), ((2.5, []), {"flag": True}),
                                   ((3, [[1]]), {})))
    assert fit == Fitted({"a": float | int,
                          "items": list[int | list[int]], "flag": bool | None})


def test_tuples_keep_positions_only_when_their_length_is_fixed() -> None:
    """Pairs stay pairs; tuples of several lengths become homogeneous."""
    def f(pair, seq):
        return pair

    fit = parameter_types(f, calls((((1, "a"), (1,)), {}), (((2, None), (1, 2, 3)), {})))
    assert fit == Fitted({"pair": tuple[int, str | None],
                          "seq": tuple[int, ...]})


def test_an_object_argument_does_not_fit() -> None:
    """An instance of a class is not a plain literal: the reason names it."""
    class Box:
        pass

    def f(box):
        return box

    fit = parameter_types(f, calls(((Box(),), {})))
    assert isinstance(fit, Unfitted) and "'box' takes Box objects" in fit.reason


def test_an_annotation_that_does_not_fit_falls_back_to_the_calls() -> None:
    """``object`` says nothing CrossHair can use; the recorded ints do."""
    def f(x: object) -> object:
        return x

    assert parameter_types(f, calls(((3,), {}))) == Fitted({"x": int})


def test_only_empty_containers_and_variadics_do_not_fit() -> None:
    """An item type never seen, or ``*args``, leaves nothing to search over."""
    def f(xs):
        return xs

    def g(*args):
        return args

    empty = parameter_types(f, calls((([],), {})))
    assert isinstance(empty, Unfitted) and "only recorded with empty containers" in empty.reason
    assert parameter_types(g, []) == Unfitted("variadic parameters (args)")
    assert isinstance(parameter_types(f, []), Unfitted)
