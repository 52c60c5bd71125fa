"""The rules, in the order the proposer composes them.

Order matters only for composition: rewrites that expose other idioms come
first (``range(len(x))`` indexing hides an append loop or a sum; deduplication
leaves ``seen.add`` calls for method hoisting), and the method hoisting that
picks up whatever loops remain comes last.
"""

from __future__ import annotations

from daemon.synthesis.rules.any_all import AnyAll
from daemon.synthesis.rules.comprehension import AppendToComprehension
from daemon.synthesis.rules.counting import DictGetCounting
from daemon.synthesis.rules.dedupe import QuadraticDedupe
from daemon.synthesis.rules.hoist_method import HoistMethodLookup
from daemon.synthesis.rules.hoist_sort import HoistSortFromLoop
from daemon.synthesis.rules.keys_membership import KeysMembership
from daemon.synthesis.rules.literal_membership import ListLiteralMembership
from daemon.synthesis.rules.loop_membership import LoopMembershipToSet
from daemon.synthesis.rules.manual_min_max import ManualMinMax
from daemon.synthesis.rules.manual_sum import ManualSum
from daemon.synthesis.rules.nested_dedupe import NestedDedupe
from daemon.synthesis.rules.nested_sum import NestedSum
from daemon.synthesis.rules.queue_deque import ListQueueToDeque
from daemon.synthesis.rules.range_len import RangeLenToEnumerate
from daemon.synthesis.rules.rule import Rule
from daemon.synthesis.rules.seen_list import SeenListToSet
from daemon.synthesis.rules.sorted_index import SortedIndexToMinMax
from daemon.synthesis.rules.string_buffer import StringBufferJoin
from daemon.synthesis.rules.string_join import StringConcatJoin

CATALOGUE: tuple[Rule, ...] = (
    RangeLenToEnumerate(),
    QuadraticDedupe(),
    NestedDedupe(),
    SeenListToSet(),
    AppendToComprehension(),
    DictGetCounting(),
    StringConcatJoin(),
    StringBufferJoin(),
    ManualSum(),
    NestedSum(),
    ManualMinMax(),
    AnyAll(),
    SortedIndexToMinMax(),
    HoistSortFromLoop(),
    ListLiteralMembership(),
    KeysMembership(),
    LoopMembershipToSet(),
    ListQueueToDeque(),
    HoistMethodLookup(),
)


def rule_by_id(rule_id: str) -> Rule:
    """The catalogue's rule with ``rule_id``; KeyError when there is none."""
    for rule in CATALOGUE:
        if rule.id == rule_id:
            return rule
    raise KeyError(rule_id)
