"""manual-sum: an accumulating ``+=`` loop from ``0`` becomes ``sum()``."""

from __future__ import annotations

from typing import ClassVar

import libcst as cst
import libcst.matchers as m

from daemon.synthesis.rules import edit
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.preconditions import confined, local_init
from daemon.synthesis.rules.rule import ForLoopRule
from daemon.synthesis.rules.shapes import (
    movable,
    parenthesized,
    plain_for,
    single_statement,
    target_names,
)


class ManualSum(ForLoopRule):
    """Adds with the builtin ``sum`` (a C loop) instead of a Python loop.

    ::

        total = 0                          total = sum(values)
        for v in values:         ->
            total += v

        n = 0                              n = sum(1 for r in rows if r.ok)
        for r in rows:           ->
            if r.ok:
                n += 1

    Why this is exact: ``sum`` starts from the int ``0`` and adds each item on the
    right with ``+`` in iteration order, as the loop does; for ints (and bools,
    Fractions, Decimals) the results are identical, and so are the exceptions for
    items that cannot be added to what came before.

    Preconditions checked syntactically:

    - ``total = 0`` (the int literal, optionally annotated) binds ``total`` earlier in
      the same block, with no mention of it and no ``break``/``continue`` in between;
    - the loop body is exactly ``total += e`` or ``total = total + e``, optionally as
      the only statement of an ``if`` without ``else``;
    - ``e`` and the condition do not mention ``total``, which is read and bound
      nowhere else in the loop; no lambda, nested function or lazy generator
      mentions it;
    - loop variables are not read after the loop; ``e`` and the condition can move
      into a generator expression; the loop is not inside ``try``/``with``.

    Runtime preconditions (gate-checked by differential replay): ``+`` on the items
    is plain addition, i.e. an item type's ``__iadd__``, if any, agrees with its
    ``__add__`` (``sum`` uses ``+``, the loop ``+=``). Floats: on CPython 3.11
    ``sum`` adds floats left to right exactly like the loop; from 3.12 on it uses
    compensated summation and may differ in the last bits, which the replay catches.
    """

    id: ClassVar[str] = "manual-sum"
    summary: ClassVar[str] = "add with sum() instead of a += loop"

    def applicable(self, fn: Function) -> bool:
        return fn.is_builtin("sum")

    def site(self, fn: Function, block: cst.IndentedBlock, index: int,
              statement: cst.For) -> cst.Module | None:
        loop = plain_for(statement)
        if loop is None or fn.guarded(loop):
            return None
        only = single_statement(loop.body)
        condition: cst.BaseExpression | None = None
        if isinstance(only, cst.If) and only.orelse is None:
            condition, only = only.test, single_statement(only.body)
        found = _accumulation(only)
        if found is None:
            return None
        name, item = found
        found_init = local_init(fn, block, index, name, m.Integer("0"))
        if found_init is None:
            return None
        init_at, init = found_init
        assert only is not None
        allowed_reads = {id(r) for r in fn.reads(name) if fn.within(r, only)}
        if any(fn.within(r, loop) and (id(r) not in allowed_reads or fn.within(r, item))
               for r in fn.reads(name)):
            return None
        if [s for s in fn.stores(name) if fn.within(s, loop)] != [_target(only)]:
            return None
        names = target_names(loop.target)
        if names is None or name in names or not confined(fn, names, loop):
            return None
        if condition is not None and fn.mentions(condition, name):
            return None
        if not all(movable(node, names) for node in (item, condition) if node is not None):
            return None
        if condition is None and m.matches(item, m.Name()) and m.matches(loop.target, m.Name()) \
                and fn.code(item) == fn.code(loop.target):
            value = f"sum({fn.code(loop.iter)})"
        else:
            guard = f" if {parenthesized(fn, condition)}" if condition is not None else ""
            value = (f"sum({parenthesized(fn, item, element=True)} for {fn.code(loop.target)}"
                     f" in {parenthesized(fn, loop.iter)}{guard})")
        return edit.bind_instead(fn, block, index, init_at, init, name, value)


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
