"""sorted-index-to-min-max: ``sorted(x)[0]`` and ``sorted(x)[-1]`` become ``min``/``max``."""

from __future__ import annotations

import ast
from typing import ClassVar

import libcst as cst

from daemon.synthesis.rules import edit
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.preconditions import store_context
from daemon.synthesis.rules.rule import Rule


class SortedIndexToMinMax(Rule):
    """Finds the smallest or largest element in one pass instead of sorting.

    ==============================  =================  =====================
    original                        rewrite            when
    ==============================  =================  =====================
    ``sorted(x)[0]``                ``min(x)``         always
    ``sorted(x, key=k)[0]``         ``min(x, key=k)``  always
    ``sorted(x, reverse=True)[0]``  ``max(x)``         always (``key`` kept)
    ``sorted(x)[-1]``               ``max(x)``         no ``key``
    ``sorted(x, reverse=True)[-1]`` ``min(x)``         no ``key``
    ==============================  =================  =====================

    Why these are exact: ``min`` keeps the first of equal minima and ``sorted`` is
    stable, so both pick the first; ``reverse=True`` keeps equal elements in their
    original order, so ``sorted(x, reverse=True)[0]`` is the first maximum, which is
    what ``max`` returns. ``sorted(x)[-1]`` is the *last* maximum, ``max(x)`` the
    first: with a ``key`` those are routinely different objects, so that case is
    left alone. ``key`` is called once per element by both.

    Preconditions checked syntactically: one positional argument, no other keyword
    than ``key`` and a literal ``reverse``; ``sorted``, ``min`` and ``max`` are not
    rebound in the function (the proposer checks the module); the subscript is read,
    not assigned.

    Runtime preconditions (gate-checked by differential replay, which compares
    exception types too):

    - ``x`` is not empty: on empty input the original raises ``IndexError``, the
      rewrite ``ValueError``;
    - the elements are totally ordered (no ``nan``; ``<`` and ``>`` consistent), since
      ``sorted`` and ``min``/``max`` compare different pairs;
    - for the ``[-1]`` forms, elements that compare equal are indistinguishable
      (``1`` and ``1.0`` are not: ``max([1, 1.0])`` is ``1``, ``sorted(...)[-1]`` is ``1.0``).
    """

    id: ClassVar[str] = "sorted-index-to-min-max"
    summary: ClassVar[str] = "take min()/max() instead of sorting to read one end"

    def rewrite(self, fn: Function) -> cst.Module | None:
        if not fn.is_builtin("sorted"):
            return None
        finder = _Subscripts()
        fn.module.visit(finder)
        for subscript in finder.found:
            new = self._replacement(fn, subscript)
            if new is not None:
                return edit.replace_node(fn, subscript, new)
        return None

    def _replacement(self, fn: Function, subscript: cst.Subscript) -> cst.Call | None:
        call = cst.ensure_type(subscript.value, cst.Call)
        index = _index(subscript)
        if index is None or store_context(fn, subscript):
            return None
        positional = [a for a in call.args if a.keyword is None]
        keywords = {a.keyword.value: a for a in call.args if a.keyword is not None}
        if len(positional) != 1 or any(a.star for a in call.args) \
                or not set(keywords) <= {"key", "reverse"}:
            return None
        reverse = False
        if "reverse" in keywords:
            flag = keywords["reverse"].value
            if not (isinstance(flag, cst.Name) and flag.value in ("True", "False")):
                return None
            reverse = flag.value == "True"
        if index == -1 and "key" in keywords:
            return None
        name = "min" if (index == 0) != reverse else "max"
        if not fn.is_builtin(name):
            return None
        args = [a for a in call.args if a.keyword is None or a.keyword.value == "key"]
        args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        return call.with_changes(func=cst.Name(name), args=args,
                                 lpar=[*subscript.lpar, *call.lpar],
                                 rpar=[*call.rpar, *subscript.rpar])


class _Subscripts(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[cst.Subscript] = []

    def visit_Subscript(self, node: cst.Subscript) -> None:
        value = node.value
        if isinstance(value, cst.Call) and isinstance(value.func, cst.Name) \
                and value.func.value == "sorted":
            self.found.append(node)


def _index(subscript: cst.Subscript) -> int | None:
    if len(subscript.slice) != 1:
        return None
    element = subscript.slice[0].slice
    if not isinstance(element, cst.Index) or element.star is not None:
        return None
    value = element.value
    if isinstance(value, cst.Integer) or (
            isinstance(value, cst.UnaryOperation) and isinstance(value.operator, cst.Minus)
            and isinstance(value.expression, cst.Integer)):
        number = ast.literal_eval(cst.Module([]).code_for_node(value))
        if number in (0, -1):
            return int(number)
    return None
