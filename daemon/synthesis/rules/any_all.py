"""any-all: a search loop that returns ``True``/``False`` becomes ``any()``/``all()``."""

from __future__ import annotations

from typing import ClassVar

import libcst as cst
import libcst.matchers as m

from daemon.synthesis.rules import edit
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.rule import ForLoopRule
from daemon.synthesis.rules.shapes import (
    movable,
    parenthesized,
    plain_for,
    single_small,
    single_statement,
    target_names,
)

_RETURN_BOOL = m.Return(value=m.Name("True") | m.Name("False"))


class AnyAll(ForLoopRule):
    """Short-circuits with ``any``/``all`` (a C loop) instead of a Python search loop.

    ::

        for x in xs:                        return any(x > limit for x in xs)
            if x > limit:          ->
                return True
        return False

        for x in xs:                        return all(x.ok for x in xs)
            if not x.ok:           ->
                return False
        return True

    ``if a not in b: return False`` becomes ``all(a in b for ...)`` (``not in`` and
    ``is not`` are by definition the negations of ``in`` and ``is``); any other
    ``if c: return False`` / ``return True`` becomes ``return not any(c for ...)``;
    a condition that is the loop variable itself becomes ``any(xs)``.

    Why this is exact: ``any`` and ``all`` evaluate the condition item by item in
    the same order, test it with the same truth test as ``if``, stop at the same
    item, return the same bool, and let the same exceptions through.

    Preconditions checked syntactically:

    - the ``for`` (no ``else``) holds only an ``if`` (no ``else``) holding only
      ``return True`` or ``return False``, and the statement right after the loop is
      the opposite ``return``;
    - the loop variables are names, and no lambda, nested function or lazy generator
      mentions them (after either ``return`` nothing else can read them);
    - the loop is not inside ``try`` (a ``finally`` could read them);
    - the condition can move into a generator expression; ``any``/``all`` are not
      rebound in the function.

    Runtime preconditions: none.
    """

    id: ClassVar[str] = "any-all"
    summary: ClassVar[str] = "short-circuit with any()/all() instead of a search loop"

    def applicable(self, fn: Function) -> bool:
        return fn.is_builtin("any") and fn.is_builtin("all")

    def site(self, fn: Function, block: cst.IndentedBlock, index: int,
             statement: cst.For) -> cst.Module | None:
        if index + 1 >= len(block.body):  # the loop must be followed by the return
            return None
        loop = plain_for(statement)
        after = single_small(block.body[index + 1])
        guard = single_statement(loop.body) if loop is not None else None
        if loop is None or not (isinstance(guard, cst.If) and guard.orelse is None) \
                or not (isinstance(after, cst.Return) and m.matches(after, _RETURN_BOOL)):
            return None
        inside = single_statement(guard.body)
        if not (isinstance(inside, cst.Return) and m.matches(inside, _RETURN_BOOL)):
            return None
        found = cst.ensure_type(inside.value, cst.Name).value
        otherwise = cst.ensure_type(after.value, cst.Name).value
        if found == otherwise:
            return None
        names = target_names(loop.target)
        if names is None or any(n in fn.escaped for n in names) \
                or any(isinstance(a, (cst.Try, cst.TryStar)) for a in fn.ancestors(loop)):
            return None
        condition = guard.test
        if not movable(condition, names):
            return None
        negate = ""
        if found == "True":
            builtin = "any"
        elif isinstance(condition, cst.UnaryOperation) and isinstance(condition.operator,
                                                                      cst.Not):
            builtin, condition = "all", condition.expression
        elif (positive := _positive(condition)) is not None:
            builtin, condition = "all", positive
        else:
            builtin, negate = "any", "not "
        if m.matches(condition, m.Name()) and m.matches(loop.target, m.Name()) \
                and fn.code(condition) == fn.code(loop.target):
            value = f"{builtin}({fn.code(loop.iter)})"
        else:
            value = (f"{builtin}({parenthesized(fn, condition, element=True)} for "
                     f"{fn.code(loop.target)} in {parenthesized(fn, loop.iter)})")
        body = list(block.body)
        new = edit.statement(fn, f"return {negate}{value}")
        body[index:index + 2] = [edit.with_leading(new, [*edit.comment_lines(body[index]),
                                                          *edit.comment_lines(body[index + 1])])]
        return edit.replace_block(fn, block, body)


def _positive(condition: cst.BaseExpression) -> cst.BaseExpression | None:
    """``a in b`` for ``a not in b`` and ``a is b`` for ``a is not b``; else None."""
    if not (isinstance(condition, cst.Comparison) and len(condition.comparisons) == 1):
        return None
    target = condition.comparisons[0]
    operator = target.operator
    positive: cst.BaseCompOp
    if isinstance(operator, cst.NotIn):
        positive = cst.In(whitespace_before=operator.whitespace_before,
                          whitespace_after=operator.whitespace_after)
    elif isinstance(operator, cst.IsNot):
        positive = cst.Is(whitespace_before=operator.whitespace_before,
                          whitespace_after=operator.whitespace_after)
    else:
        return None
    return condition.with_changes(comparisons=[target.with_changes(operator=positive)])
