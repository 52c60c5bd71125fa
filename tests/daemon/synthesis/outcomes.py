"""Comparable outcomes of a call: what equivalence means for the rules' tests."""

from __future__ import annotations

import copy
import types
from collections.abc import Callable
from typing import Any


def snapshot(value: Any) -> Any:
    """``value`` as a comparable structure that records the type of every part.

    Floats compare by ``repr``, so ``nan`` equals itself and ``-0.0`` differs from ``0.0``;
    dicts compare in insertion order.
    """
    if isinstance(value, float):
        return float, repr(value)
    if isinstance(value, (list, tuple)):
        return type(value), [snapshot(v) for v in value]
    if isinstance(value, dict):
        return type(value), [(snapshot(k), snapshot(v)) for k, v in value.items()]
    if isinstance(value, (set, frozenset)):
        return type(value), sorted(repr(snapshot(v)) for v in value)
    if isinstance(value, types.SimpleNamespace):
        return type(value), snapshot(vars(value))
    return type(value), value


def outcome(function: Callable[..., Any], arguments: tuple[Any, ...]) -> Any:
    """The call's result (or exception type), and its arguments as the call left them."""
    arguments = copy.deepcopy(arguments)
    try:
        result = ("returned", snapshot(function(*arguments)))
    except Exception as exc:
        result = ("raised", type(exc))
    return result, snapshot(arguments)
