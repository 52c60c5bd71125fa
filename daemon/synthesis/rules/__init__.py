"""Rule-based proposer: a catalogue of LibCST rewrites of slow CPython idioms.

:class:`RulesProposer` turns a :class:`~daemon.synthesis.base.ProposalRequest`
into one candidate per applicable rule and, when rules apply in sequence, one
with all of them composed, listed first. Origins read ``rules:<id>`` or
``rules:<id>+<id>...`` in the order the rewrites were applied.

Each rule lives in its own module and states its preconditions in its
docstring: those checked syntactically here (with LibCST's scope analysis), and
the runtime ones left to the validation gate, whose differential replay of
recorded calls compares values, types and exception types. In short:

=========================  ==============================================================
rule                       runtime precondition (the gate checks it)
=========================  ==============================================================
range-len-to-enumerate     the sequence iterates as it indexes (not a dict), unchanged
quadratic-dedupe           items hashable, ``__eq__`` consistent with ``__hash__``
append-to-comprehension    none
dict-get-counting          keys hashable; key expressions without side effects
string-concat-join         the pieces are ``str``
manual-sum                 plain ``+`` (ints; floats differ in the last bit from 3.12)
manual-min-max             consistent comparisons; no ``None`` item for the ``is None`` form
any-all                    none
sorted-index-to-min-max    non-empty input, total order; for ``[-1]`` equal means identical
hoist-sort-from-loop       the list and its items' keys do not change behind the loop
list-literal-membership    the tested value is hashable
keys-membership            ``in`` on the mapping agrees with its keys view
loop-membership-to-set     items and tested values hashable; the list really is one
hoist-method-lookup        none
nested-dedupe              items hashable, ``__eq__`` consistent with ``__hash__``
seen-list-to-set           appended and tested values hashable, as above
nested-sum                 plain ``+``, as for ``manual-sum``
string-buffer-join         the pieces are ``str``
list-queue-to-deque        none
=========================  ==============================================================

Rewrites never add module-level imports; ``dict-get-counting`` and
``list-queue-to-deque`` import ``Counter`` and ``deque`` inside the function and
are offered only when the policy allows ``collections``.
"""

from daemon.synthesis.rules.catalogue import CATALOGUE, rule_by_id
from daemon.synthesis.rules.proposer import RulesProposer
from daemon.synthesis.rules.rule import Rule

__all__ = ["CATALOGUE", "Rule", "RulesProposer", "rule_by_id"]
