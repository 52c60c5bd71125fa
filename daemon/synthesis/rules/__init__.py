"""Rule-based proposer: a catalogue of LibCST rewrites of slow CPython idioms.

Each rule lives in its own module, states its preconditions in its docstring
(those checked syntactically here, and those left to the validation gate's
differential replay) and rewrites a module holding one function definition.
:class:`RulesProposer` turns a :class:`~daemon.synthesis.base.ProposalRequest`
into one candidate per applicable rule plus, when several apply, their
composition.
"""

from daemon.synthesis.rules.catalogue import CATALOGUE, rule_by_id
from daemon.synthesis.rules.proposer import RulesProposer
from daemon.synthesis.rules.rule import Rule

__all__ = ["CATALOGUE", "Rule", "RulesProposer", "rule_by_id"]
