"""list-queue-to-deque: a local list used as a FIFO queue becomes a ``collections.deque``."""

from __future__ import annotations

from typing import ClassVar

import libcst as cst
import libcst.matchers as m

from daemon.synthesis.rules import edit
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.preconditions import truth_tested
from daemon.synthesis.rules.rule import Rule

IMPORT = "from collections import deque"

_LIST_ASSIGN = m.Assign(targets=[m.AssignTarget(target=m.Name())],
                        value=m.List() | m.ListComp())
_ONE_ARG = [m.Arg(keyword=None, star="")]


class ListQueueToDeque(Rule):
    """Pops from the front of a ``deque`` in O(1) instead of a list's ``pop(0)`` in O(n).

    ::

        queue = [root]                          from collections import deque
        seen = {root}                           ...
        while queue:                  ->        queue = deque([root])
            node = queue.pop(0)                 seen = {root}
            for child in graph[node]:           while queue:
                ...                                 node = queue.popleft()
                queue.append(child)                 for child in graph[node]:
                                                        ...
                                                        queue.append(child)

    Why this is exact: the queue is only ever filled, emptied from either end, tested
    for emptiness and measured, and a ``deque`` does each of those with the same
    result as a list holding the same items in the same order; ``popleft()`` on an
    empty deque raises ``IndexError`` like ``pop(0)`` on an empty list. Nothing else
    ever sees the object, so its type cannot show.

    Preconditions checked syntactically:

    - the name is a local of the function bound only by plain ``name = [...]``
      statements (a list display or list comprehension; no parameter, annotation,
      ``for`` target, augmented assignment, walrus or ``del``), and no lambda,
      nested function or lazy generator mentions it;
    - every read of it is one of ``name.pop(0)``, ``name.pop()``,
      ``name.append(e)``, ``name.extend(e)`` (called on the spot), a truth test
      (``while name``, ``if not name``, ``and``/``or`` operands of those) or
      ``len(name)``; so it is never returned, passed, aliased, indexed, sliced,
      iterated or compared;
    - at least one ``pop(0)`` runs in a loop;
    - the name ``deque`` is not used in the function; the rule imports it inside the
      function, and the proposer offers it only when the policy allows
      ``collections``; ``len`` is not rebound.

    Runtime precondition: none beyond the above (the argument of ``extend`` is
    consumed item by item by both).
    """

    id: ClassVar[str] = "list-queue-to-deque"
    summary: ClassVar[str] = "use a deque with popleft() instead of a list with pop(0)"
    imports: ClassVar[tuple[str, ...]] = ("collections",)

    def rewrite(self, fn: Function) -> cst.Module | None:
        if "deque" in fn.identifiers and not edit.has_function_import(fn.module, IMPORT):
            return None
        finder = _ListBindings()
        fn.node.body.visit(finder)
        tried: set[str] = set()
        for name in finder.names:
            if name in tried:
                continue
            tried.add(name)
            result = self._name(fn, name)
            if result is not None:
                return edit.add_function_import(cst.parse_module(result.code), IMPORT)
        return None

    def _name(self, fn: Function, name: str) -> cst.Module | None:
        if not fn.is_local(name):
            return None
        values = fn.assigned_values(name, _LIST_ASSIGN)
        if values is None:
            return None
        fronts: set[int] = set()
        in_loop = False
        for read in fn.reads(name):
            if fn.lazy(read):
                return None
            method = _method(fn, read)
            if method == "pop(0)":
                call = fn.parent(fn.parent(read) or read)
                fronts.add(id(call))
                in_loop = in_loop or any(isinstance(a, (cst.For, cst.While))
                                         for a in fn.ancestors(read))
            elif method is None and not (truth_tested(fn, read) or _measured(fn, read)):
                return None
        if not in_loop or not values:
            return None
        result = fn.module.visit(_Rewrite(values, fronts))
        return result if isinstance(result, cst.Module) else None


def _method(fn: Function, read: cst.CSTNode) -> str | None:
    """``"pop(0)"``, ``"pop()"``, ``"append"`` or ``"extend"`` when ``read`` is the receiver
    of such a call made on the spot; None for any other use."""
    attribute = fn.parent(read)
    call = fn.parent(attribute) if attribute is not None else None
    if not (isinstance(attribute, cst.Attribute) and attribute.value is read
            and isinstance(call, cst.Call) and call.func is attribute):
        return None
    attr = attribute.attr.value
    if attr == "pop" and not call.args:
        return "pop()"
    if attr == "pop" and m.matches(call, m.Call(args=[m.Arg(value=m.Integer("0"), keyword=None,
                                                            star="")])):
        return "pop(0)"
    if attr in ("append", "extend") and m.matches(call, m.Call(args=_ONE_ARG)):
        return attr
    return None


def _measured(fn: Function, node: cst.CSTNode) -> bool:
    arg = fn.parent(node)
    call = fn.parent(arg) if arg is not None else None
    return (isinstance(arg, cst.Arg) and arg.keyword is None and arg.star == ""
            and isinstance(call, cst.Call) and len(call.args) == 1
            and m.matches(call.func, m.Name("len")) and fn.is_builtin("len"))


class _ListBindings(cst.CSTVisitor):
    """Names bound to a list display or comprehension by a plain assignment, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def visit_Assign(self, node: cst.Assign) -> None:
        if m.matches(node, _LIST_ASSIGN):
            self.names.append(cst.ensure_type(node.targets[0].target, cst.Name).value)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False


class _Rewrite(cst.CSTTransformer):
    def __init__(self, values: set[int], fronts: set[int]) -> None:
        super().__init__()
        self.values, self.fronts = values, fronts

    def leave_List(self, original_node: cst.List,
                   updated_node: cst.List) -> cst.BaseExpression:
        return self._wrap(original_node, updated_node)

    def leave_ListComp(self, original_node: cst.ListComp,
                       updated_node: cst.ListComp) -> cst.BaseExpression:
        return self._wrap(original_node, updated_node)

    def _wrap(self, original: cst.BaseExpression,
              updated: cst.List | cst.ListComp) -> cst.BaseExpression:
        if id(original) not in self.values:
            return updated
        if isinstance(updated, cst.List) and not updated.elements:
            return cst.Call(func=cst.Name("deque"))
        return cst.Call(func=cst.Name("deque"), args=[cst.Arg(value=updated)])

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        if id(original_node) not in self.fronts:
            return updated_node
        attribute = cst.ensure_type(updated_node.func, cst.Attribute)
        return updated_node.with_changes(func=attribute.with_changes(attr=cst.Name("popleft")),
                                         args=[])
