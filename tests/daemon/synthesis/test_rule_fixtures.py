"""Before/after fixtures: each rule rewrites its examples and leaves its near misses alone.

``fixtures/<rule-id>/<case>.before.py`` is rewritten into ``<case>.after.py``
character for character; ``<case>.skip.py`` is a near miss the rule must not touch.
"""

from __future__ import annotations

import re
from pathlib import Path

import libcst as cst
import pytest

from daemon.synthesis.rules import CATALOGUE, Rule, rule_by_id

FIXTURES = Path(__file__).parent / "fixtures"


def fixtures(suffix: str) -> list[object]:
    return [pytest.param(path.parent.name, path, id=f"{path.parent.name}/{path.name}")
            for path in sorted(FIXTURES.glob(f"*/*{suffix}"))]


@pytest.mark.parametrize(("rule_id", "before"), fixtures(".before.py"))
def test_rule_rewrites_fixture_exactly(rule_id: str, before: Path) -> None:
    """The rule turns each before-fixture into its after-fixture, comments and layout kept."""
    after = before.with_name(before.name.replace(".before.py", ".after.py"))
    result = rule_by_id(rule_id).apply(cst.parse_module(before.read_text()))
    assert result.code == after.read_text()


@pytest.mark.parametrize(("rule_id", "before"), fixtures(".before.py"))
def test_rewrite_compiles_and_is_stable(rule_id: str, before: Path) -> None:
    """Each after-fixture compiles, and the rule finds nothing left to rewrite in it."""
    after = before.with_name(before.name.replace(".before.py", ".after.py"))
    compile(after.read_text(), str(after), "exec", dont_inherit=True)
    module = cst.parse_module(after.read_text())
    assert rule_by_id(rule_id).apply(module) is module


@pytest.mark.parametrize(("rule_id", "skip"), fixtures(".skip.py"))
def test_rule_leaves_counterexample_alone(rule_id: str, skip: Path) -> None:
    """For a near miss the rule returns the very module it was given."""
    module = cst.parse_module(skip.read_text())
    assert rule_by_id(rule_id).apply(module) is module


@pytest.mark.parametrize("rule_id", [rule.id for rule in CATALOGUE])
def test_every_rule_has_examples_and_counterexamples(rule_id: str) -> None:
    """Every rule in the catalogue has at least two rewrites and two near misses on file."""
    folder = FIXTURES / rule_id
    assert len(list(folder.glob("*.before.py"))) >= 2
    assert len(list(folder.glob("*.skip.py"))) >= 2
    for before in folder.glob("*.before.py"):
        assert before.with_name(before.name.replace(".before.py", ".after.py")).exists()


@pytest.mark.parametrize("rule", CATALOGUE, ids=lambda rule: rule.id)
def test_rule_documents_its_preconditions(rule: Rule) -> None:
    """Each rule has a kebab-case id, a one-line summary and a docstring with its preconditions."""
    doc = type(rule).__doc__
    assert re.fullmatch(r"[a-z]+(-[a-z]+)+", rule.id)
    assert rule.summary and "\n" not in rule.summary
    assert doc is not None and "Preconditions checked syntactically" in doc
    assert "Runtime precondition" in doc


def test_rule_ids_are_unique() -> None:
    """No two rules share an id, so an origin names exactly one rewrite."""
    ids = [rule.id for rule in CATALOGUE]
    assert len(ids) == len(set(ids)) >= 12


def test_package_docstring_lists_every_rule() -> None:
    """The package's summary table names every rule in the catalogue, so it stays current."""
    import daemon.synthesis.rules as package

    assert package.__doc__ is not None
    listed = {line.split()[0] for line in package.__doc__.splitlines()
              if re.match(r"[a-z]+(-[a-z]+)+\s", line)}
    assert listed == {rule.id for rule in CATALOGUE}
