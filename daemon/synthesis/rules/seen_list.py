"""seen-list-to-set: a list kept only for membership tests becomes a set."""

from __future__ import annotations

from typing import ClassVar

import libcst as cst
import libcst.matchers as m

from daemon.synthesis.rules import edit
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.rule import Rule

_EMPTY_LIST_ASSIGN = m.Assign(targets=[m.AssignTarget(target=m.Name())], value=m.List(elements=[]))


class SeenListToSet(Rule):
    """Keeps a list that is only appended to and tested for membership as a set.

    ::

        seen = []                              seen = set()
        merged = []                            merged = []
        for event in events:          ->       for event in events:
            if event.id not in seen:               if event.id not in seen:
                seen.append(event.id)                  seen.add(event.id)
                merged.append(event)                   merged.append(event)

    Why this is exact: ``x in lst`` is true when some item is ``x`` or equals it, and
    so is ``x in s`` for a set whose items hash consistently with their equality;
    the order and the duplicates of the list are never looked at, so nothing else
    can tell the two apart.

    Preconditions checked syntactically:

    - the name is a local of the function bound only by plain ``name = []``
      statements (no parameter, annotation, ``for`` target, augmented assignment,
      walrus or ``del``), and no lambda, nested function or lazy generator mentions it;
    - every read of it is the right operand of a comparison with a single ``in`` or
      ``not in``, or the receiver of ``name.append(e)`` used as a statement (the
      return value unused); so it is never returned, passed, iterated or measured;
    - at least one of the membership tests runs in a loop (else nothing is gained);
    - ``set`` is not rebound in the function.

    Runtime preconditions (gate-checked by differential replay): the appended and
    the tested values are hashable, with ``__eq__`` agreeing with ``__hash__``
    (strings, numbers, tuples of those). An unhashable value raises ``TypeError`` in
    the rewrite where the list accepted it, which the replay reports.
    """

    id: ClassVar[str] = "seen-list-to-set"
    summary: ClassVar[str] = "keep a membership-only list as a set"

    def rewrite(self, fn: Function) -> cst.Module | None:
        if not fn.is_builtin("set"):
            return None
        finder = _EmptyLists()
        fn.node.body.visit(finder)
        tried: set[str] = set()
        for name in finder.names:
            if name in tried:
                continue
            tried.add(name)
            result = self._name(fn, name)
            if result is not None:
                return result
        return None

    def _name(self, fn: Function, name: str) -> cst.Module | None:
        if not fn.is_local(name):
            return None
        lists = fn.assigned_values(name, _EMPTY_LIST_ASSIGN)
        if lists is None:
            return None
        appends: set[int] = set()
        tested_in_loop = False
        for read in fn.reads(name):
            if fn.lazy(read):
                return None
            attribute = _append_receiver(fn, read)
            if attribute is not None:
                appends.add(id(attribute))
            elif _membership_operand(fn, read):
                tested_in_loop = tested_in_loop or any(
                    isinstance(a, (cst.For, cst.While)) for a in fn.ancestors(read))
            else:
                return None
        if not tested_in_loop or not lists:
            return None
        result = fn.module.visit(_Rewrite(lists, appends, edit.expression(fn, "set()")))
        return result if isinstance(result, cst.Module) else None


def _membership_operand(fn: Function, read: cst.CSTNode) -> bool:
    """Whether ``read`` is the right operand of a comparison with one ``in``/``not in``."""
    target = fn.parent(read)
    comparison = fn.parent(target) if target is not None else None
    return (isinstance(target, cst.ComparisonTarget) and target.comparator is read
            and isinstance(target.operator, (cst.In, cst.NotIn))
            and isinstance(comparison, cst.Comparison) and len(comparison.comparisons) == 1)


def _append_receiver(fn: Function, read: cst.CSTNode) -> cst.Attribute | None:
    """The ``name.append`` of ``name.append(e)`` used as a statement, with ``read`` as ``name``."""
    attribute = fn.parent(read)
    call = fn.parent(attribute) if attribute is not None else None
    statement = fn.parent(call) if call is not None else None
    if (isinstance(attribute, cst.Attribute) and attribute.value is read
            and attribute.attr.value == "append" and isinstance(call, cst.Call)
            and call.func is attribute and len(call.args) == 1
            and call.args[0].keyword is None and call.args[0].star == ""
            and isinstance(statement, cst.Expr) and statement.value is call):
        return attribute
    return None


class _EmptyLists(cst.CSTVisitor):
    """Names bound to ``[]`` by a plain assignment, in source order."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def visit_Assign(self, node: cst.Assign) -> None:
        if m.matches(node, _EMPTY_LIST_ASSIGN):
            self.names.append(cst.ensure_type(node.targets[0].target, cst.Name).value)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False


class _Rewrite(cst.CSTTransformer):
    def __init__(self, lists: set[int], appends: set[int], empty: cst.BaseExpression) -> None:
        super().__init__()
        self.lists, self.appends, self.empty = lists, appends, empty

    def leave_List(self, original_node: cst.List,
                   updated_node: cst.List) -> cst.BaseExpression:
        if id(original_node) in self.lists:
            return self.empty
        return updated_node

    def leave_Attribute(self, original_node: cst.Attribute,
                        updated_node: cst.Attribute) -> cst.Attribute:
        if id(original_node) in self.appends:
            return updated_node.with_changes(attr=cst.Name("add"))
        return updated_node
