"""nested-sum: an accumulating ``+=`` in nested loops from ``0`` becomes one ``sum()``."""

from __future__ import annotations

from typing import ClassVar

import libcst as cst
import libcst.matchers as m

from daemon.synthesis.rules import edit
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.preconditions import confined, local_init
from daemon.synthesis.rules.rule import ForLoopRule
from daemon.synthesis.rules.shapes import (
    assigned_name,
    movable,
    parenthesized,
    plain_for,
    single_statement,
    target_names,
)

# Past this many columns the generator's clauses go on lines of their own.
_WIDTH = 99


class NestedSum(ForLoopRule):
    """Adds over nested loops with one ``sum`` of a generator instead of Python loops.

    ::

        total = 0                                  total = sum(
        for order in orders:                           line.qty * line.price
            if order.paid:                 ->          for order in orders if order.paid
                for line in order.lines:               for line in order.lines)
                    total += line.qty * line.price

    Why this is exact: the generator visits the items in the loops' order, evaluating
    each inner iterable and each condition at the same point, and ``sum`` starts from
    the int ``0`` and adds each item on the right with ``+``, as the loop does.

    Preconditions checked syntactically:

    - ``total = 0`` (the int literal, optionally annotated) binds ``total`` earlier in
      the same block, with no mention of it and no ``break``/``continue`` in between;
    - the outer loop's body is a chain of single statements: plain ``for`` loops
      (at least one inner one; no ``else``) and ``if``s without ``else``, ending in
      ``total += e`` or ``total = total + e``;
    - ``e``, the conditions and the inner iterables do not mention ``total``, which is
      read and bound nowhere else in the loops; no lambda, nested function or lazy
      generator mentions it;
    - loop variables are names, not read after the loops; ``e``, the conditions and
      the inner iterables can move into a generator expression, and no iterable
      holds a walrus; the loops are not inside ``try``/``with``.

    Runtime preconditions (gate-checked by differential replay): ``+`` on the items
    is plain addition (an item type's ``__iadd__``, if any, agrees with its
    ``__add__``). Floats: on CPython 3.11 ``sum`` adds floats left to right exactly
    like the loop; from 3.12 on it uses compensated summation and may differ in the
    last bits, which the replay catches, as for ``manual-sum``.
    """

    id: ClassVar[str] = "nested-sum"
    summary: ClassVar[str] = "add over nested loops with one sum() of a generator"

    def applicable(self, fn: Function) -> bool:
        return fn.is_builtin("sum")

    def site(self, fn: Function, block: cst.IndentedBlock, index: int,
             statement: cst.For) -> cst.Module | None:
        loop = plain_for(statement)
        if loop is None or fn.guarded(loop):
            return None
        clauses: list[cst.For | cst.BaseExpression] = [loop]
        node: object = single_statement(loop.body)
        while True:
            inner = plain_for(node if isinstance(node, cst.CSTNode) else None)
            if inner is not None:
                clauses.append(inner)
                node = single_statement(inner.body)
            elif isinstance(node, cst.If) and node.orelse is None:
                clauses.append(node.test)
                node = single_statement(node.body)
            else:
                break
        loops = [c for c in clauses if isinstance(c, cst.For)]
        found = _accumulation(node)
        if len(loops) < 2 or found is None:
            return None
        name, item = found
        found_init = local_init(fn, block, index, name, m.Integer("0"))
        if found_init is None:
            return None
        init_at, init = found_init
        assert isinstance(node, cst.CSTNode)
        allowed_reads = {id(r) for r in fn.reads(name) if fn.within(r, node)}
        if any(fn.within(r, loop) and (id(r) not in allowed_reads or fn.within(r, item))
               for r in fn.reads(name)):
            return None
        if [s for s in fn.stores(name) if fn.within(s, loop)] != [_target(node)]:
            return None
        names: list[str] = []
        for each in loops:
            bound = target_names(each.target)
            if bound is None:
                return None
            names.extend(bound)
        if name in names or not confined(fn, names, loop):
            return None
        moved: list[cst.CSTNode] = [item, *(c for c in clauses if not isinstance(c, cst.For)),
                                    *(each.iter for each in loops[1:])]
        if any(fn.mentions(part, name) or not movable(part, names) for part in moved):
            return None
        if any(_has_walrus(each.iter) for each in loops):
            return None
        parts = [parenthesized(fn, item, element=True)]
        for clause in clauses:
            if isinstance(clause, cst.For):
                parts.append(f"for {fn.code(clause.target)} in {parenthesized(fn, clause.iter)}")
            else:
                parts[-1] += f" if {parenthesized(fn, clause)}"
        binding = assigned_name(init)
        assert binding is not None
        # "total = " or "total: int = ", kept by the new binding
        lead = len(fn.code(init)) - len(fn.code(binding[1]))
        one_line = " ".join(parts)
        if fn.positions[loop].start.column + lead + len(f"sum({one_line})") <= _WIDTH:
            value = f"sum({one_line})"
        else:
            # continuation lines are indented from the block the binding sits in
            value = "sum(" + ("\n" + " " * (lead + len("sum("))).join(parts) + ")"
        return edit.bind_instead(fn, block, index, init_at, init, name, value)


class _Walrus(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.found = False

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        self.found = True


def _has_walrus(expr: cst.CSTNode) -> bool:
    finder = _Walrus()
    expr.visit(finder)
    return finder.found


def _accumulation(small: object) -> tuple[str, cst.BaseExpression] | None:
    """``(name, item)`` for ``name += item`` or ``name = name + item``."""
    if isinstance(small, cst.AugAssign) and isinstance(small.target, cst.Name) \
            and isinstance(small.operator, cst.AddAssign):
        return small.target.value, small.value
    if isinstance(small, cst.Assign) and len(small.targets) == 1 \
            and isinstance(small.targets[0].target, cst.Name) \
            and isinstance(small.value, cst.BinaryOperation) \
            and isinstance(small.value.operator, cst.Add) \
            and m.matches(small.value.left, m.Name(small.targets[0].target.value)):
        return small.targets[0].target.value, small.value.right
    return None


def _target(small: object) -> cst.CSTNode | None:
    if isinstance(small, cst.AugAssign):
        return small.target
    if isinstance(small, cst.Assign):
        return small.targets[0].target
    return None
