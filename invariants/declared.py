"""Declared invariants: predicates from the policy that every candidate outcome must satisfy.

``policy.invariants.declared`` names predicates as ``module:function``; the shadow
imports them before any candidate exists and calls each as
``predicate(args, kwargs, result)`` for every replayed and generated call of the
candidate whose outcomes already matched the original's (a call that differs is
reported as that difference). ``args`` and ``kwargs`` are a copy of the
arguments as they were before the call; ``result`` is the returned value, or the
tuple of items for a returned iterator. Calls that raise are judged by their
exception alone: a predicate describes results.

A falsy return or an exception is a mismatch of kind ``invariant`` that names
the predicate; the evidence also says whether the original's result satisfies
it (when it does not, the declaration is what needs a look).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from typing import Any

from invariants.compare import RAISE, Difference, Outcome, exception_message, exception_name
from invariants.errors import InvariantLoadError
from invariants.render import safe_repr
from invariants.replay import Observer
from invariants.tripwire import Tripwire

Predicate = tuple[str, Callable[..., Any]]


def load_predicates(names: list[str]) -> list[Predicate]:
    """Import each ``module:function`` (dotted qualnames allowed); raises InvariantLoadError."""
    predicates: list[Predicate] = []
    for name in names:
        module_name, _, qualname = name.partition(":")
        try:
            found: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                found = getattr(found, part)
        except Exception as exc:
            raise InvariantLoadError(f"cannot load declared invariant {name}: "
                                     f"{type(exc).__name__}: {exc}") from exc
        if not callable(found):
            raise InvariantLoadError(f"declared invariant {name} is not callable")
        predicates.append((name, found))
    return predicates


def invariant_observer(predicates: list[Predicate], tripwire: Tripwire) -> Observer:
    """The replay observer that checks ``predicates`` on each matching candidate outcome."""

    def observe(before: tuple[tuple[Any, ...], dict[str, Any]], original: Outcome,
                candidate: Outcome) -> Difference | None:
        if candidate.kind == RAISE:
            return None
        for name, predicate in predicates:
            failure = _check(predicate, before, candidate.value, tripwire, "candidate")
            if failure is None:
                continue
            original_failure = _check(predicate, before, original.value, tripwire, "original")
            expected = (f"{name} holds (it does for the original's result)"
                        if original_failure is None
                        else f"{name} holds (it fails for the original too: {original_failure})")
            return Difference("invariant", expected, f"{name} {failure} for the candidate's "
                              f"result {safe_repr(candidate.value, 200)}")
        return None

    return observe


def _check(predicate: Callable[..., Any], before: tuple[tuple[Any, ...], dict[str, Any]],
           result: Any, tripwire: Tripwire, context: str) -> str | None:
    """None when the predicate holds, else what happened ("returned False", "raised …")."""
    args, kwargs = copy.deepcopy(before)
    # The result's own methods may run inside the predicate: attribute what they do
    # to the version that made the result.
    with tripwire.context(context):
        try:
            verdict = predicate(args, kwargs, result)
            if bool(verdict):
                return None
            return f"returned {safe_repr(verdict, 80)}"
        except Exception as exc:
            return f"raised {exception_name(type(exc))}: {exception_message(exc)[:200]}"
