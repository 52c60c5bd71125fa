"""Generated inputs: shaped like the recorded calls and the annotations, and reproducible."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from invariants.strategies import call_strategy, generate_inputs

Call = tuple[tuple[Any, ...], dict[str, Any]]

RECORDED: list[Call] = [
    (([("alice", 200), ("bob", 404), ("alice", 200)], 500), {}),
    (([("carol", 500)], 900), {}),
    (([("dave", 201), ("erin", 302), ("frank", 200), ("grace", 503)], 500), {}),
]


def counts(rows, per_mille):  # type: ignore[no-untyped-def]
    return len(rows) * per_mille


def annotated(rows: list[tuple[str, int]], per_mille: int) -> int:
    return len(rows) * per_mille


def loose(rows: Any, per_mille: Any) -> Any:
    return rows, per_mille


def calls(fn: Any, recorded: list[Call] = RECORDED, examples: int = 200, seed: int = 0
          ) -> list[Call]:
    blobs = generate_inputs(call_strategy(fn, recorded), examples, seed)
    return [pickle.loads(blob) for blob in blobs]


@pytest.fixture(autouse=True)
def private_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # Hypothesis may cache its character tables in the cwd


def test_corpus_inputs_keep_the_recorded_types_and_layout() -> None:
    """Without annotations every generated call has the recorded layout and element types."""
    generated = calls(counts)
    assert len(generated) > 100
    for args, kwargs in generated:
        assert kwargs == {} and len(args) == 2
        rows, per_mille = args
        assert type(rows) is list and type(per_mille) is int
        assert all(type(row) is tuple and len(row) == 2 and type(row[0]) is str
                   and type(row[1]) is int for row in rows)


def test_the_sizes_real_inputs_reach_are_covered() -> None:
    """Empty, single, duplicated and large lists all appear among the generated calls."""
    rows = [args[0] for args, _ in calls(counts)]
    assert [] in rows
    assert any(len(row) == 1 for row in rows)
    assert any(len(row) != len(set(row)) for row in rows)
    assert max(len(row) for row in rows) >= 100


def test_integers_include_the_boundaries_around_recorded_values() -> None:
    """One above and one below a recorded integer are generated, and values never seen."""
    per_mille = {args[1] for args, _ in calls(counts)}
    assert {499, 501, 899, 901} & per_mille
    assert per_mille - {500, 900}


def test_recorded_strings_are_varied() -> None:
    """Strings that are not among the recorded ones are generated for string slots."""
    names = {row[0] for args, _ in calls(counts) for row in args[0]}
    assert names - {"alice", "bob", "carol", "dave", "erin", "frank", "grace"}


def test_the_same_seed_draws_the_same_inputs() -> None:
    """Generation is reproducible: one seed, one sequence; another seed, another."""
    assert calls(counts, examples=40, seed=3) == calls(counts, examples=40, seed=3)
    assert calls(counts, examples=40, seed=3) != calls(counts, examples=40, seed=4)


def test_annotations_add_inputs_the_corpus_never_showed() -> None:
    """With annotations, rows with names and codes from the whole type appear too."""
    generated = calls(annotated, examples=300)
    assert all(type(args[1]) is int for args, _ in generated)
    codes = {row[1] for args, _ in generated for row in args[0]}
    assert any(code < 0 or code > 1000 for code in codes)


def test_any_annotations_fall_back_to_the_corpus_shapes() -> None:
    """``Any`` says nothing about the values: the recorded types are used instead."""
    for args, _ in calls(loose, examples=60):
        assert type(args[0]) is list and type(args[1]) is int


def test_without_recorded_calls_the_signature_gives_the_layout() -> None:
    """A target with no usable recording is still called with its required arguments."""
    generated = calls(annotated, recorded=[], examples=20)
    assert generated and all(len(args) == 2 for args, _ in generated)
