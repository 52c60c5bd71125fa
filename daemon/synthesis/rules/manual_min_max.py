"""manual-min-max: a loop that keeps the largest (smallest) item becomes ``max`` (``min``)."""

from __future__ import annotations

from typing import ClassVar

import libcst as cst
import libcst.matchers as m

from daemon.synthesis.rules import edit
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.preconditions import confined, last_binding
from daemon.synthesis.rules.rule import ForLoopRule
from daemon.synthesis.rules.shapes import (
    assigned_name,
    is_pure,
    movable,
    parenthesized,
    plain_for,
    single_small,
    single_statement,
    target_names,
)

_ATOMS = (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.List, cst.ListComp,
          cst.SetComp, cst.DictComp, cst.Set, cst.Dict, cst.SimpleString)


class ManualMinMax(ForLoopRule):
    """Folds with the builtin ``max``/``min`` instead of a compare-and-keep loop.

    ::

        peak = values[0]                     peak = values[0]
        for v in values:           ->        peak = max((peak, *values))
            if v > peak:
                peak = v

        best = None                          best = None
        for v in values:           ->        best = max(values, default=None)
            if best is None or v > best:
                best = v

    Also ``if peak < v``, the ``min`` mirrors, and ``peak = max(peak, v)``. The
    binding before the loop is kept; when the loop updates from whatever ``peak``
    held, the rewrite folds that value in first.

    Why this is exact: ``max`` walks its items keeping the current best and
    replaces it only when ``item > best`` (``min``: ``item < best``), so a tie keeps
    the earlier item, exactly like the strict ``>``/``<`` test. With ``peak`` as the
    first item the same comparisons happen in the same order, ``nan`` included.
    ``>=``/``<=`` tests keep the last of equal items and are left alone.

    Preconditions checked syntactically:

    - ``peak`` is bound earlier in the same block and not rebound or deleted in
      between (so it is bound when the loop starts); for the ``is None`` form that
      binding is ``peak = None``;
    - the loop body is exactly the ``if`` (no ``else``) holding ``peak = v``, or
      ``peak = max(peak, v)`` with ``peak`` first;
    - ``v`` is the same pure-looking expression (a name, attribute or constant-index
      read) in test and assignment, and does not mention ``peak``, which the loop
      reads and binds nowhere else; no lambda, nested function or lazy generator
      mentions it;
    - loop variables are not read after the loop; the loop is not in ``try``/``with``;
      ``max``/``min`` are not rebound in the function.

    Runtime preconditions (gate-checked): comparisons are consistent, ``a < b``
    exactly when ``b > a`` (the reflected spellings ``peak < v`` call the other
    operand's method); an attribute or item read in ``v`` has no side effects (the
    loop evaluates it twice for a new best). For the ``is None`` form no item is
    ``None``. The fold builds a tuple of all items before comparing: a generator
    whose items have side effects interleaved with comparisons that have side
    effects would see a different order.
    """

    id: ClassVar[str] = "manual-min-max"
    summary: ClassVar[str] = "fold with max()/min() instead of a compare-and-keep loop"

    def site(self, fn: Function, block: cst.IndentedBlock, index: int,
              statement: cst.For) -> cst.Module | None:
        loop = plain_for(statement)
        if loop is None or fn.guarded(loop):
            return None
        only = single_statement(loop.body)
        found = _pattern(fn, only)
        if found is None:
            return None
        name, item, builtin, none_form, store = found
        assert only is not None
        if not fn.is_builtin(builtin) or not fn.is_local(name) or not is_pure(item) \
                or fn.mentions(item, name):
            return None
        init_at = last_binding(fn, block, index, name)
        if init_at is None:
            return None
        bound = assigned_name(single_small(block.body[init_at]))
        if none_form and (bound is None or not m.matches(bound[1], m.Name("None"))):
            return None
        if any(fn.within(r, loop) and not fn.within(r, only) for r in fn.reads(name)) \
                or [s for s in fn.stores(name) if fn.within(s, loop)] != [store]:
            return None
        names = target_names(loop.target)
        if names is None or name in names or not confined(fn, names, loop) \
                or not movable(item, names):
            return None
        whole = m.matches(item, m.Name()) and m.matches(loop.target, m.Name()) \
            and fn.code(item) == fn.code(loop.target)
        if whole:
            items = _atom(fn, loop.iter)
        else:
            items = (f"({parenthesized(fn, item, element=True)} for {fn.code(loop.target)} "
                     f"in {parenthesized(fn, loop.iter)})")
        if none_form:
            value = f"{builtin}({items}, default=None)"
        else:
            value = f"{builtin}(({name}, *{items}))"
        body = list(block.body)
        edit.replace_at(body, index, edit.statement(fn, f"{name} = {value}"))
        return edit.replace_block(fn, block, body)


def _pattern(fn: Function, only: object) -> tuple[
        str, cst.BaseExpression, str, bool, cst.CSTNode] | None:
    """``(name, item, "max"|"min", is-None form, the store)`` for a known loop body."""
    if isinstance(only, cst.Assign):
        target = only.targets[0].target if len(only.targets) == 1 else None
        call = only.value
        if isinstance(target, cst.Name) and m.matches(call, m.Call(
                func=m.Name("max") | m.Name("min"),
                args=[m.Arg(value=m.Name(target.value), keyword=None, star=""),
                      m.Arg(keyword=None, star="")])):
            assert isinstance(call, cst.Call) and isinstance(call.func, cst.Name)
            return target.value, call.args[1].value, call.func.value, False, target
        return None
    if not (isinstance(only, cst.If) and only.orelse is None):
        return None
    assign = single_statement(only.body)
    if not (isinstance(assign, cst.Assign) and len(assign.targets) == 1
            and isinstance(assign.targets[0].target, cst.Name)):
        return None
    target = assign.targets[0].target
    name, item = target.value, assign.value
    test, none_form = only.test, False
    if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.Or) \
            and m.matches(test.left, m.Comparison(left=m.Name(name), comparisons=[
                m.ComparisonTarget(operator=m.Is(), comparator=m.Name("None"))])):
        test, none_form = test.right, True
    if not (isinstance(test, cst.Comparison) and len(test.comparisons) == 1):
        return None
    operator = test.comparisons[0].operator
    left, right = test.left, test.comparisons[0].comparator
    if m.matches(right, m.Name(name)) and fn.code(left) == fn.code(item):
        greater = isinstance(operator, cst.GreaterThan)  # item > best
    elif m.matches(left, m.Name(name)) and fn.code(right) == fn.code(item):
        greater = isinstance(operator, cst.LessThan)  # best < item
    else:
        return None
    if not isinstance(operator, (cst.GreaterThan, cst.LessThan)):
        return None
    return name, item, "max" if greater else "min", none_form, target


def _atom(fn: Function, expr: cst.BaseExpression) -> str:
    text = fn.code(expr)
    if isinstance(expr, _ATOMS) or expr.lpar:
        return text
    return f"({text})"
