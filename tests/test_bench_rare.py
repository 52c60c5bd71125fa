"""The rare-branch mutant generator of the mutation benchmark (bench/_rare.py)."""

from __future__ import annotations

import inspect
import random
from typing import Any

from bench._rare import RareMutant, compile_mutant, rare_mutants


def shipping(parcels: list[tuple[str, int]], zone: str, express: bool) -> int:
    """Shipping cost in cents: a fixed price per parcel plus its weight, more abroad."""
    total = 0
    for _label, grams in parcels:
        total += 250 + grams // 10
    if zone != "home":
        total = total * 3 // 2
    return total + (500 if express else 0)


def _calls(count: int = 120) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    rng = random.Random(7)
    return [(([(rng.choice("abc"), rng.randint(100, 5000)) for _ in range(rng.randint(1, 6))],
              rng.choice(["home", "eu"]), rng.random() < 0.3), {}) for _ in range(count)]


def _function(mutant: RareMutant) -> Any:
    fn = compile_mutant(mutant.source, shipping)
    assert fn is not None, mutant.source
    return fn


def test_rare_mutants_differ_from_the_original_only_on_their_trigger() -> None:
    """Each mutant agrees with the original on the sample calls and differs on its trigger."""
    calls = _calls()
    found = rare_mutants(shipping, calls, {"original": inspect.getsource(shipping)})
    assert {m.kind for m in found} >= {"empty", "length", "threshold", "negative", "equals"}
    for mutant in found:
        fn = _function(mutant)
        assert all(fn(*args, **kwargs) == shipping(*args, **kwargs) for args, kwargs in calls)
        args, kwargs = mutant.trigger_call
        assert fn(*args, **kwargs) != shipping(*args, **kwargs), mutant.description
        assert mutant.met_by == 0 and mutant.calls == len(calls)


def test_a_guard_goes_ahead_of_every_body_given() -> None:
    """A faster equivalent body gets the same guards, after the docstring, labelled by origin."""
    faster = ('def shipping(parcels, zone, express):\n'
              '    """Shipping cost."""\n'
              '    total = sum(250 + grams // 10 for _label, grams in parcels)\n'
              '    if zone != "home":\n'
              '        total = total * 3 // 2\n'
              '    return total + (500 if express else 0)\n')
    found = rare_mutants(shipping, _calls(),
                         {"original": inspect.getsource(shipping), "rules:sum": faster})
    bodies = {m.body for m in found}
    assert bodies == {"original", "rules:sum"}
    guarded = next(m for m in found if m.body == "rules:sum")
    lines = guarded.source.splitlines()
    assert lines[2].startswith("    if ") and "sum(" in guarded.source
    assert guarded.line == 3
