"""The restart decision: apply, stale or tampered, for each active version."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from snapshots import (
    IntegrityError,
    ObjectMissing,
    State,
    Version,
    VersionStatus,
    activate,
    mark,
    plan_restore,
    source_sha,
    with_version,
)

from .factories import BASE, SOURCE, TARGET, make_version

OTHER = "shop.cart:subtotal"
V1 = make_version()
V2 = make_version("def subtotal(xs):\n    return sum(xs)\n", target=OTHER, base_sha="b" * 64)


def active_state(*versions: Version) -> State:
    state = State()
    for version in versions:
        state = activate(with_version(state, version), version.target, version.id)
    return state


def sources(*versions: Version) -> dict[str, str]:
    return {v.id: v.source for v in versions}


def loader(known: dict[str, str]) -> Callable[[str], str]:
    def load(sha: str) -> str:
        if sha not in known:
            raise ObjectMissing(sha)
        if source_sha(known[sha]) != sha:
            raise IntegrityError(Path("objects") / sha, expected=sha, actual=source_sha(known[sha]))
        return known[sha]
    return load


def test_matching_base_is_applied_with_its_verified_source() -> None:
    """A version whose target still has the stored base hash is applied, source attached."""
    [decision] = plan_restore(active_state(V1), loader(sources(V1)), lambda target: BASE)
    assert (decision.action, decision.target, decision.version_id) == ("apply", TARGET, V1.id)
    assert decision.version is not None
    assert decision.version.source == SOURCE
    assert decision.expected_base == decision.actual_base == BASE


def test_changed_base_is_stale() -> None:
    """A version whose target's code changed since is stale and carries no source."""
    [decision] = plan_restore(active_state(V1), loader(sources(V1)), lambda target: "c" * 64)
    assert (decision.action, decision.actual_base, decision.version) == ("stale", "c" * 64, None)
    assert "changed" in decision.reason


def test_vanished_target_is_stale() -> None:
    """A version whose target no longer resolves is stale."""
    [decision] = plan_restore(active_state(V1), loader(sources(V1)), lambda target: None)
    assert (decision.action, decision.actual_base) == ("stale", None)
    assert "no longer resolves" in decision.reason


@pytest.mark.parametrize("stored", [{V1.id: "import os\n"}, {}], ids=["altered", "missing"])
def test_tampered_or_missing_source_is_never_applied(stored: dict[str, str]) -> None:
    """A source that fails its hash check, or is gone, is tampered even when the base matches."""
    [decision] = plan_restore(active_state(V1), loader(stored), lambda target: BASE)
    assert (decision.action, decision.version) == ("tampered", None)


def test_each_active_version_gets_one_decision_by_target() -> None:
    """Every active version is decided on its own, in target order; inactive ones are ignored."""
    state = with_version(active_state(V2, V1), make_version("def total(xs): return 0\n"))
    bases = {TARGET: BASE, OTHER: None}
    decisions = plan_restore(state, loader(sources(V1, V2)), bases.get)
    assert [(d.target, d.action) for d in decisions] == [(OTHER, "stale"), (TARGET, "apply")]


def test_empty_state_has_nothing_to_restore() -> None:
    """With nothing active there is nothing to decide."""
    assert plan_restore(State(), loader({}), lambda target: BASE) == []


def _stacked(*sources_: str, base_sha: str = BASE) -> tuple[State, list[Version]]:
    """A state where each version replaced the one before it; the last is active."""
    state, versions, replaced = State(), [], ""
    for n, source in enumerate(sources_):
        version = make_version(source, base_sha=base_sha, created_at=10.0 + n,
                               evidence={"replaces": replaced})
        state = activate(with_version(state, version), TARGET, version.id)
        versions.append(version)
        replaced = version.id
    return state, versions


STACK = [f"def total(xs):\n    return sum(xs) + {n} - {n}\n" for n in range(3)]


def test_the_versions_an_active_one_replaced_come_back_beneath_it() -> None:
    """An applied version carries the superseded versions it replaced, oldest first."""
    state, (a, b, c) = _stacked(*STACK)
    [decision] = plan_restore(state, loader(sources(a, b, c)), lambda target: BASE)
    assert (decision.action, decision.version_id) == ("apply", c.id)
    assert [v.id for v in decision.predecessors] == [a.id, b.id]
    assert [v.source for v in decision.predecessors] == STACK[:2]


def test_the_chain_stops_at_a_tampered_predecessor() -> None:
    """Below a predecessor whose source fails its check nothing is restored, not even older."""
    state, (a, b, c) = _stacked(*STACK)
    stored = {**sources(a, c), b.id: "import os\n"}
    [decision] = plan_restore(state, loader(stored), lambda target: BASE)
    assert decision.action == "apply" and decision.predecessors == ()


def test_the_chain_stops_at_a_predecessor_no_longer_superseded() -> None:
    """A predecessor rolled back meanwhile, or made for another base, ends the chain."""
    state, (a, b, c) = _stacked(*STACK)
    rolled = mark(state, b.id, VersionStatus.ROLLED_BACK)
    [decision] = plan_restore(rolled, loader(sources(a, b, c)), lambda target: BASE)
    assert decision.predecessors == ()
    other_base = make_version(STACK[0], base_sha="d" * 64, evidence={"replaces": ""})
    state = activate(with_version(State(), other_base), TARGET, other_base.id)
    top = make_version(STACK[1], evidence={"replaces": other_base.id})
    state = activate(with_version(state, top), TARGET, top.id)
    [decision] = plan_restore(state, loader(sources(other_base, top)), lambda target: BASE)
    assert decision.predecessors == ()


def test_a_loop_of_replaces_links_ends() -> None:
    """Hand-edited evidence naming each other in a loop cannot make the restore loop forever."""
    state, (a, b, c) = _stacked(*STACK)
    looped = State(versions={**state.versions, a.id: dataclasses.replace(
        state.versions[a.id], evidence={"replaces": b.id})}, active=state.active)
    [decision] = plan_restore(looped, loader(sources(a, b, c)), lambda target: BASE)
    assert [v.id for v in decision.predecessors] == [a.id, b.id]
