"""quadratic-dedupe: order-preserving deduplication with a seen-set instead of list scans."""

from __future__ import annotations

from typing import ClassVar

import libcst as cst
import libcst.matchers as m

from daemon.synthesis.rules import edit
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.preconditions import local_init, stored_within
from daemon.synthesis.rules.rule import ForLoopRule
from daemon.synthesis.rules.shapes import (
    is_pure,
    plain_for,
    single_statement,
)

_NOT_IN_NAME = m.Comparison(comparisons=[m.ComparisonTarget(operator=m.NotIn(),
                                                            comparator=m.Name())])
_APPEND = m.Call(func=m.Attribute(value=m.Name(), attr=m.Name("append")),
                 args=[m.Arg(keyword=None, star="")])


class QuadraticDedupe(ForLoopRule):
    """Tests membership in a set of seen items instead of scanning the result list.

    ::

        result = []                    result = []
        for x in xs:                   seen = set()
            if x not in result:  ->    for x in xs:
                result.append(x)           if x not in seen:
                                               seen.add(x)
                                               result.append(x)

    ``result`` stays the same list, filled in the same order.

    Preconditions checked syntactically:

    - ``result = []`` binds ``result`` earlier in the same block, and statements in
      between do not mention it, so the list is empty when the loop starts;
    - the loop body is exactly that ``if`` (no ``else``), whose body is exactly the
      ``append`` of the expression tested;
    - ``result`` is read nowhere else in the loop, is not bound there, and no
      lambda, nested function or lazy generator mentions it;
    - the tested expression is a name, or an attribute or constant-index read of one.

    Runtime preconditions (the gate checks them by differential replay): the items
    are hashable and their ``__eq__`` agrees with their ``__hash__`` (true of
    strings, numbers, and tuples of those); an attribute or item read in the tested
    expression has no side effects, since it is evaluated once more per new item.
    """

    id: ClassVar[str] = "quadratic-dedupe"
    summary: ClassVar[str] = "deduplicate with a seen-set instead of scanning the result list"

    def site(self, fn: Function, block: cst.IndentedBlock, index: int,
              loop: cst.For) -> cst.Module | None:
        if plain_for(loop) is None:
            return None
        guard = single_statement(loop.body)
        if not (isinstance(guard, cst.If) and guard.orelse is None
                and m.matches(guard.test, _NOT_IN_NAME)):
            return None
        test = cst.ensure_type(guard.test, cst.Comparison)
        target = test.comparisons[0]
        listed = cst.ensure_type(target.comparator, cst.Name)
        name, probe = listed.value, test.left
        append = single_statement(guard.body)
        if not (is_pure(probe) and isinstance(append, cst.Expr)
                and m.matches(append.value, _APPEND)):
            return None
        call = cst.ensure_type(append.value, cst.Call)
        receiver = cst.ensure_type(call.func, cst.Attribute).value
        if not (m.matches(receiver, m.Name(name))
                and fn.code(call.args[0].value) == fn.code(probe)):
            return None
        if local_init(fn, block, index, name, m.List(elements=[])) is None or \
                not fn.is_builtin("set"):
            return None
        reads = [r for r in fn.reads(name) if fn.within(r, loop)]
        if {id(r) for r in reads} != {id(listed), id(receiver)} or len(reads) != 2 \
                or stored_within(fn, name, loop):
            return None
        seen = fn.fresh("seen")
        add = edit.small(fn, f"{seen}.add({fn.code(probe)})")
        if isinstance(guard.body, cst.IndentedBlock):
            suite: cst.BaseSuite = guard.body.with_changes(
                body=[cst.SimpleStatementLine([add]), *guard.body.body])
        else:
            semicolon = cst.Semicolon(whitespace_after=cst.SimpleWhitespace(" "))
            suite = guard.body.with_changes(
                body=[add.with_changes(semicolon=semicolon), *guard.body.body])
        new_guard = guard.with_changes(
            test=test.with_changes(comparisons=[target.with_changes(comparator=cst.Name(seen))]),
            body=suite)
        body = list(block.body)
        body[index] = loop.deep_replace(guard, new_guard)
        edit.insert_before(body, index, edit.statement(fn, f"{seen} = set()"))
        return edit.replace_block(fn, block, body)
