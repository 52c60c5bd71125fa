"""The rules proposer: candidates per rule and composed, their provenance, and odd input."""

from __future__ import annotations

import textwrap
import types
from pathlib import Path
from typing import Any, ClassVar

import libcst as cst
import pytest

from daemon.synthesis.base import Candidate, ProposalRequest, Proposer
from daemon.synthesis.rules import CATALOGUE, Rule, RulesProposer, rule_by_id
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.manual_sum import ManualSum
from invariants.targets import compile_function, make_function, original_source, sha256_text

TARGET = "tests.daemon.synthesis.test_rules_proposer:summarise"
FIXTURES = Path(__file__).parent / "fixtures"


def summarise(rows: list[tuple[str, int]], skip: str) -> tuple[list[str], int, str]:
    """Distinct names, their total and a label line: three idioms in one function."""
    names = []
    for i in range(len(rows)):
        if rows[i][0] not in names and rows[i][0] != skip:
            names.append(rows[i][0])
    total = 0
    for _name, amount in rows:
        total += amount
    label = ""
    for name in names:
        label += name + ";"
    return names, total, label


class Ledger:
    """A class whose method is a target: rules must cope with ``self``."""

    def __init__(self, amounts: list[int]) -> None:
        self.amounts = amounts

    def positives(self, floor: int) -> list[int]:
        kept = []
        for amount in self.amounts:
            if amount > floor:
                kept.append(amount)
        return kept


def as_function(obj: object) -> types.FunctionType:
    assert isinstance(obj, types.FunctionType)
    return obj


SUMMARISE = as_function(summarise)
POSITIVES = as_function(Ledger.positives)


def request(source: str, **extra: Any) -> ProposalRequest:
    return ProposalRequest(target=extra.pop("target", TARGET), source=source, **extra)


def propose(source: str, **extra: Any) -> list[Candidate]:
    return RulesProposer().propose(request(source, **extra))


def rules_of(candidate: Candidate) -> list[str]:
    kind, _, ids = candidate.origin.partition(":")
    assert kind == "rules"
    return ids.split("+")


SAMPLE = original_source(SUMMARISE)


def test_proposer_satisfies_the_protocol() -> None:
    """RulesProposer is a Proposer named "rules"."""
    proposer: Proposer = RulesProposer()
    assert proposer.name == "rules"


def test_composed_candidate_comes_first_and_combines_rules() -> None:
    """With several idioms, the first candidate applies every rule, including one that only
    applies once another has rewritten the code; each rule also comes alone."""
    candidates = propose(SAMPLE)
    composed = candidates[0]
    assert rules_of(composed) == ["range-len-to-enumerate", "string-concat-join", "manual-sum",
                                  "append-to-comprehension"]
    assert [rules_of(c) for c in candidates[1:]] == [
        ["range-len-to-enumerate"], ["string-concat-join"], ["manual-sum"]]


def test_composed_candidate_installs_into_the_real_function() -> None:
    """The composed source compiles as summarise's code and gives the original's results."""
    composed = propose(SAMPLE)[0]
    code = compile_function(composed.source, SUMMARISE, filename="<composed>")
    faster = make_function(code, SUMMARISE)
    rows = [("b", 2), ("a", 5), ("b", 1), ("skip", 9), ("c", -3)]
    for args in ((rows, "skip"), ([], "x"), (rows[:1], "b")):
        assert faster(*args) == summarise(*args)


def test_method_candidate_installs_into_the_real_method() -> None:
    """A method's candidate keeps ``self`` and compiles against the method."""
    source = original_source(POSITIVES)
    candidate = propose(source, target="tests.daemon.synthesis.test_rules_proposer:"
                                       "Ledger.positives")[0]
    assert rules_of(candidate) == ["append-to-comprehension"]
    code = compile_function(candidate.source, POSITIVES, filename="<method>")
    ledger = Ledger([3, -1, 7, 0])
    assert types.MethodType(make_function(code, POSITIVES), ledger)(0) == [3, 7]


def test_candidates_carry_provenance() -> None:
    """Every candidate names the target, the input's sha256 as parent, a one-line reason
    and the seconds its rewrite took by the proposer's clock."""
    ticks = iter(range(1000))
    candidates = RulesProposer(clock=lambda: float(next(ticks))).propose(request(SAMPLE))
    assert candidates
    for candidate in candidates:
        assert candidate.target == TARGET
        assert candidate.parent == sha256_text(SAMPLE)
        assert candidate.rationale and "\n" not in candidate.rationale
        assert candidate.source != SAMPLE
        assert candidate.cost == {"seconds": 1.0}


class _SumAgain(ManualSum):
    """The manual-sum rewrite under another id.

    Preconditions checked syntactically: as manual-sum. Runtime preconditions: as manual-sum.
    """

    id: ClassVar[str] = "manual-sum-again"


def test_identical_sources_are_proposed_once() -> None:
    """When two rules produce the same source, only the first one's candidate is kept."""
    proposer = RulesProposer([rule_by_id("manual-sum"), _SumAgain()])
    candidates = proposer.propose(request(SAMPLE))
    assert [rules_of(c) for c in candidates] == [["manual-sum"]]


def test_proposing_again_from_the_composed_source_yields_nothing() -> None:
    """The composed candidate is a fixed point: no rule applies to it any more."""
    composed = propose(SAMPLE)[0]
    assert propose(composed.source) == []


@pytest.mark.parametrize("rule", CATALOGUE, ids=lambda rule: rule.id)
def test_single_rule_candidates_are_not_proposed_twice(rule: Rule) -> None:
    """After a rule's rewrite, proposing again never offers that rule alone a second time."""
    for before in sorted((FIXTURES / rule.id).glob("*.before.py")):
        (single,) = [c for c in propose(before.read_text(), allowed_imports=("collections",))
                     if rules_of(c) == [rule.id]]
        again = propose(single.source, allowed_imports=("collections",))
        assert [rule.id] not in [rules_of(c) for c in again]


def test_nothing_to_rewrite_gives_no_candidates() -> None:
    """A function without any of the idioms gets an empty list."""
    assert propose(textwrap.dedent("""\
        def clamp(x, low, high):
            return max(low, min(x, high))
        """)) == []


@pytest.mark.parametrize("source", [
    "",
    "def broken(:\n",
    "x = 1\n",
    "lambda xs: [x for x in xs]\n",
    "class A:\n    def f(self, xs):\n        out = []\n        for x in xs:\n"
    "            out.append(x)\n        return out\n",
    "async def f(xs):\n    out = []\n    for x in xs:\n        out.append(x)\n    return out\n",
    "def f(xs):\n    return xs\ndef g(xs):\n    return xs\n",
    "def outer(xs):\n    def inner():\n        out = []\n        for x in xs:\n"
    "            out.append(x)\n        return out\n    return inner\n",
    "def f(xs):\n\tif xs:\n        return 1\n",
    "\x00\x01 not python",
    "def f(x):\n    return " + "(" * 5000 + "x" + ")" * 5000 + "\n",
    "def f(x):\n    return " + "+".join(["x"] * 10000) + "\n",
], ids=["empty", "syntax-error", "statement", "lambda", "class", "async", "two-functions",
        "nested-only", "tab-mix", "binary", "deep-nesting", "long-chain"])
def test_odd_input_gives_no_candidates(source: str) -> None:
    """Input that is not one plain function the rules understand gives [] and never raises."""
    assert propose(source) == []


def test_counting_rule_needs_collections_to_be_allowed() -> None:
    """dict-get-counting imports Counter, so it is offered only when the policy allows it."""
    source = textwrap.dedent("""\
        def tally(words):
            counts = {}
            for word in words:
                counts[word] = counts.get(word, 0) + 1
            return counts
        """)
    without = [rules_of(c) for c in propose(source)]
    allowed = [rules_of(c) for c in propose(source, allowed_imports=("collections",))]
    assert not any("dict-get-counting" in ids for ids in without)
    assert ["dict-get-counting"] in allowed


@pytest.mark.parametrize("module_source", [
    "from numpy import *\n",
    "def sum(values):\n    return 0\n",
    "import builtins as sum\n",
])
def test_builtin_rebound_by_the_module_drops_the_candidate(module_source: str) -> None:
    """A rewrite that would call a builtin the module rebinds is not proposed."""
    source = textwrap.dedent("""\
        def total(xs):
            t = 0
            for x in xs:
                t += x
            return t
        """)
    assert [rules_of(c) for c in propose(source)] == [["manual-sum"]]
    assert propose(source, module_source=module_source) == []


def test_module_rebinding_a_consumer_stops_all_rules() -> None:
    """When the module rebinds ``any`` (or sum, sorted, ...) that the function calls, a
    generator passed to it may run late, so the analysis would be unsound: nothing is proposed."""
    source = textwrap.dedent("""\
        def f(xs):
            out = []
            for x in xs:
                out.append(x)
            return out, any(y for y in out)
        """)
    assert propose(source)
    assert propose(source, module_source="def any(gen):\n    return gen\n") == []


def test_decorators_and_comments_survive() -> None:
    """Decorators, the docstring and comments outside the rewritten loop are kept verbatim."""
    source = textwrap.dedent('''\
        @functools.lru_cache(maxsize=None)  # memoised
        def doubled(xs):
            """Twice each."""
            # build the answer
            out = []
            for x in xs:
                out.append(2 * x)
            return out  # done
        ''')
    (candidate, *_) = propose(source)
    assert candidate.source == textwrap.dedent('''\
        @functools.lru_cache(maxsize=None)  # memoised
        def doubled(xs):
            """Twice each."""
            # build the answer
            out = [2 * x for x in xs]
            return out  # done
        ''')


class _Exploding(Rule):
    """A rule that fails, to show a broken rule costs its own candidate only.

    Preconditions checked syntactically: none. Runtime preconditions: none.
    """

    id: ClassVar[str] = "exploding-rule"
    summary: ClassVar[str] = "always fails"

    def rewrite(self, fn: Function) -> cst.Module | None:
        raise RuntimeError("boom")


def test_failing_rule_is_reported_and_skipped() -> None:
    """A rule that raises is reported to on_error and the other rules still propose."""
    errors: list[tuple[str, BaseException]] = []
    proposer = RulesProposer([_Exploding(), rule_by_id("manual-sum")],
                             on_error=lambda rule_id, exc: errors.append((rule_id, exc)))
    candidates = proposer.propose(request(SAMPLE))
    assert [rules_of(c) for c in candidates] == [["manual-sum"]]
    assert errors and errors[0][0] == "exploding-rule"
    assert isinstance(errors[0][1], RuntimeError)
