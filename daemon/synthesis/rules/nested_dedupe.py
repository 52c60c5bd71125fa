"""nested-dedupe: a dedupe ``if x not in result`` below other statements uses a seen-set."""

from __future__ import annotations

from typing import ClassVar

import libcst as cst
import libcst.matchers as m

from daemon.synthesis.rules import edit
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.preconditions import local_init, stored_within
from daemon.synthesis.rules.rule import ForLoopRule
from daemon.synthesis.rules.shapes import is_pure, plain_for, single_statement

_NOT_IN_NAME = m.Comparison(comparisons=[m.ComparisonTarget(operator=m.NotIn(),
                                                            comparator=m.Name())])
_APPEND = m.Expr(value=m.Call(func=m.Attribute(value=m.Name(), attr=m.Name("append")),
                              args=[m.Arg(keyword=None, star="")]))


class NestedDedupe(ForLoopRule):
    """Tests membership in a set of the kept items instead of scanning the result list,
    where the test sits below filters, guards or inner loops.

    ::

        hosts = []                              hosts = []
        for check in checks:                    seen = set()
            if check.status != "ok":     ->     for check in checks:
                continue                            if check.status != "ok":
            if check.host not in excluded:              continue
                if check.host not in hosts:         if check.host not in excluded:
                    hosts.append(check.host)            if check.host not in seen:
                                                            seen.add(check.host)
                                                            hosts.append(check.host)

    The set mirrors the list: both start empty before the loop, and every item the
    loop appends to the list goes into the set right before, so ``x not in result``
    and ``x not in seen`` agree at every test. ``result`` stays the same list, filled
    in the same order. The plain shape (the loop body is the ``if`` alone) is left to
    ``quadratic-dedupe``.

    Preconditions checked syntactically:

    - ``result = []`` binds ``result`` earlier in the same block, and statements in
      between do not mention it, so the list is empty when the loop starts;
    - an ``if probe not in result:`` anywhere in the loop (under other ``if``s, after
      ``continue`` guards, in an inner loop) has ``result.append(probe)`` as the first
      statement of its body, with ``probe`` textually the same;
    - in the whole loop ``result`` is read only by that test and that ``append``, and
      is not bound there; no lambda, nested function or lazy generator mentions it;
    - ``probe`` is a name, or an attribute or constant-index read of one;
    - ``set`` is not rebound in the function.

    Runtime preconditions (gate-checked by differential replay): the items are
    hashable and their ``__eq__`` agrees with their ``__hash__``; an attribute or item
    read in ``probe`` has no side effects, since it is evaluated once more per new item.
    """

    id: ClassVar[str] = "nested-dedupe"
    summary: ClassVar[str] = "deduplicate with a seen-set where the test sits below other code"

    def applicable(self, fn: Function) -> bool:
        return fn.is_builtin("set")

    def site(self, fn: Function, block: cst.IndentedBlock, index: int,
             loop: cst.For) -> cst.Module | None:
        if plain_for(loop) is None:
            return None
        finder = _Guards()
        loop.body.visit(finder)
        for guard in finder.found:
            if single_statement(loop.body) is guard:
                continue  # quadratic-dedupe's shape
            result = self._guard(fn, block, index, loop, guard)
            if result is not None:
                return result
        return None

    def _guard(self, fn: Function, block: cst.IndentedBlock, index: int, loop: cst.For,
               guard: cst.If) -> cst.Module | None:
        test = cst.ensure_type(guard.test, cst.Comparison)
        target = test.comparisons[0]
        listed = cst.ensure_type(target.comparator, cst.Name)
        name, probe = listed.value, test.left
        first = _first_small(guard.body)
        if first is None or not is_pure(probe) or not m.matches(first, _APPEND):
            return None
        call = cst.ensure_type(cst.ensure_type(first, cst.Expr).value, cst.Call)
        receiver = cst.ensure_type(call.func, cst.Attribute).value
        if not (m.matches(receiver, m.Name(name))
                and fn.code(call.args[0].value) == fn.code(probe)):
            return None
        if local_init(fn, block, index, name, m.List(elements=[])) is None:
            return None
        reads = [r for r in fn.reads(name) if fn.within(r, loop)]
        if {id(r) for r in reads} != {id(listed), id(receiver)} or len(reads) != 2 \
                or stored_within(fn, name, loop) or fn.lazy(guard):
            return None
        seen = fn.fresh("seen")
        add = edit.small(fn, f"{seen}.add({fn.code(probe)})")
        new_guard = guard.with_changes(
            test=test.with_changes(comparisons=[target.with_changes(comparator=cst.Name(seen))]),
            body=_prepend(guard.body, add))
        body = list(block.body)
        body[index] = loop.deep_replace(guard, new_guard)
        edit.insert_before(body, index, edit.statement(fn, f"{seen} = set()"))
        return edit.replace_block(fn, block, body)


def _first_small(suite: cst.BaseSuite) -> cst.BaseSmallStatement | None:
    if isinstance(suite, cst.SimpleStatementSuite):
        return suite.body[0] if suite.body else None
    if isinstance(suite, cst.IndentedBlock) and suite.body \
            and isinstance(suite.body[0], cst.SimpleStatementLine):
        return suite.body[0].body[0]
    return None


def _prepend(suite: cst.BaseSuite, add: cst.BaseSmallStatement) -> cst.BaseSuite:
    if isinstance(suite, cst.IndentedBlock):
        return suite.with_changes(body=[cst.SimpleStatementLine([add]), *suite.body])
    assert isinstance(suite, cst.SimpleStatementSuite)
    semicolon = cst.Semicolon(whitespace_after=cst.SimpleWhitespace(" "))
    return suite.with_changes(body=[add.with_changes(semicolon=semicolon), *suite.body])


class _Guards(cst.CSTVisitor):
    """``if x not in name`` statements, outermost first; nested scopes are not entered."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[cst.If] = []

    def visit_If(self, node: cst.If) -> None:
        if m.matches(node.test, _NOT_IN_NAME):
            self.found.append(node)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False

    def visit_Lambda(self, node: cst.Lambda) -> bool:
        return False
