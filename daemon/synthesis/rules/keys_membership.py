"""keys-membership: ``k in d.keys()`` becomes ``k in d``."""

from __future__ import annotations

from typing import ClassVar

import libcst as cst
import libcst.matchers as m

from daemon.synthesis.rules import edit
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.rule import Rule

_KEYS_CALL = m.Call(func=m.Attribute(attr=m.Name("keys")), args=[])


class KeysMembership(Rule):
    """Tests membership in a mapping directly instead of in its keys view.

    ``k in d.keys()`` -> ``k in d`` (and ``not in``): one method call and one view
    object less per test.

    Preconditions checked syntactically: the right operand of ``in``/``not in`` is a
    call of ``.keys()`` with no arguments; the receiver is evaluated once either way.

    Runtime preconditions (gate-checked): the receiver is a mapping whose
    ``__contains__`` agrees with its keys view, as for ``dict`` and every
    ``collections.abc.Mapping`` that does not override one of the two.
    """

    id: ClassVar[str] = "keys-membership"
    summary: ClassVar[str] = "test membership in the mapping itself instead of its .keys()"

    def rewrite(self, fn: Function) -> cst.Module | None:
        finder = _Targets()
        fn.module.visit(finder)
        for call in finder.found:
            receiver = cst.ensure_type(call.func, cst.Attribute).value
            return edit.replace_node(fn, call, receiver.with_changes(
                lpar=[*call.lpar, *receiver.lpar], rpar=[*receiver.rpar, *call.rpar]))
        return None


class _Targets(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[cst.Call] = []

    def visit_ComparisonTarget(self, node: cst.ComparisonTarget) -> None:
        if isinstance(node.operator, (cst.In, cst.NotIn)) and m.matches(node.comparator,
                                                                         _KEYS_CALL):
            self.found.append(cst.ensure_type(node.comparator, cst.Call))
