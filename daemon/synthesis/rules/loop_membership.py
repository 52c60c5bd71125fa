"""loop-membership-to-set: membership tests on an unchanging list in a loop use a set."""

from __future__ import annotations

from typing import ClassVar

import libcst as cst

from daemon.synthesis.rules import edit
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.preconditions import (
    last_binding,
    read_only_use,
    stored_within,
    unaliased,
)
from daemon.synthesis.rules.rule import Rule

_SEQUENCE_CALLS = frozenset({"list", "tuple", "sorted"})
_SEQUENCE_ANNOTATIONS = frozenset({"list", "tuple", "List", "Tuple"})


class LoopMembershipToSet(Rule):
    """Builds a set of a list once before a loop that tests membership in it.

    ::

        banned = [...]                          banned = [...]
        for user in users:            ->        banned_set = set(banned)
            if user not in banned:              for user in users:
                keep.append(user)                   if user not in banned_set:
                                                        keep.append(user)

    Preconditions checked syntactically:

    - every binding of the name in the function is a list or tuple: a list/tuple
      display, a list comprehension, a call of ``list``/``tuple``/``sorted``, or a
      parameter annotated ``list[...]``/``tuple[...]`` (a string would test
      substrings, a set already hashes);
    - it is bound when the loop starts: a parameter, or bound earlier in the same
      block and not rebound or deleted in between;
    - the loop does not bind, delete or assign into it, and every use of it in the
      loop only reads it (no method that changes it, no call that could keep it);
      no lambda, nested function or lazy generator mentions it; elsewhere in the
      function it is only read too, or used after the loop, so no alias
      (``push = name.append``) exists;
    - ``set`` is not rebound in the function.

    Runtime preconditions (gate-checked): the list's items and the tested values
    are hashable, with ``__eq__`` agreeing with ``__hash__``; a parameter annotated
    as a list really is one; nothing changes the list during the loop through
    another reference.
    """

    id: ClassVar[str] = "loop-membership-to-set"
    summary: ClassVar[str] = "test membership in a set built once instead of a list in a loop"

    def rewrite(self, fn: Function) -> cst.Module | None:
        if not fn.is_builtin("set"):
            return None
        for block, index, loop in fn.loops():
            finder = _Tests()
            loop.body.visit(finder)
            names: dict[str, list[cst.Name]] = {}
            for found in finder.found:
                if not fn.lazy(found):
                    names.setdefault(found.value, []).append(found)
            for name, uses in names.items():
                if self._applies(fn, block, index, loop, name):
                    cache = fn.fresh(f"{name}_set")
                    new_loop = loop.visit(_Replace({id(u) for u in uses}, cache))
                    assert isinstance(new_loop, cst.BaseStatement)
                    body = list(block.body)
                    body[index] = new_loop
                    edit.insert_before(body, index, edit.statement(fn, f"{cache} = set({name})"))
                    return edit.replace_block(fn, block, body)
        return None

    def _applies(self, fn: Function, block: cst.IndentedBlock, index: int,
                 loop: cst.For | cst.While, name: str) -> bool:
        if not fn.is_local(name) or stored_within(fn, name, loop) \
                or not unaliased(fn, name, loop):
            return False
        stores = fn.stores(name)
        if not stores or not all(_sequence(fn, store) for store in stores):
            return False
        is_param = any(isinstance(store, cst.Param) for store in stores)
        if not is_param and last_binding(fn, block, index, name) is None:
            return False
        return all(read_only_use(fn, r, known_list=True) and not fn.lazy(r)
                   for r in fn.reads(name) if fn.within(r, loop))


def _sequence(fn: Function, store: cst.CSTNode) -> bool:
    """Whether the binding ``store`` certainly binds a list or tuple."""
    if isinstance(store, cst.Param):
        annotation = store.annotation.annotation if store.annotation is not None else None
        if isinstance(annotation, cst.Subscript):
            annotation = annotation.value
        return isinstance(annotation, cst.Name) and annotation.value in _SEQUENCE_ANNOTATIONS
    target = fn.parent(store)
    statement = fn.parent(target) if isinstance(target, cst.AssignTarget) else target
    if isinstance(statement, cst.Assign) and len(statement.targets) == 1 \
            and statement.targets[0].target is store:
        value: cst.BaseExpression | None = statement.value
    elif isinstance(statement, cst.AnnAssign) and statement.target is store:
        value = statement.value
    else:
        return False
    if isinstance(value, (cst.List, cst.ListComp, cst.Tuple)):
        return True
    return (isinstance(value, cst.Call) and isinstance(value.func, cst.Name)
            and value.func.value in _SEQUENCE_CALLS and fn.is_builtin(value.func.value))


class _Tests(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[cst.Name] = []

    def visit_ComparisonTarget(self, node: cst.ComparisonTarget) -> None:
        if isinstance(node.operator, (cst.In, cst.NotIn)) and isinstance(node.comparator,
                                                                           cst.Name):
            self.found.append(node.comparator)


class _Replace(cst.CSTTransformer):
    def __init__(self, uses: set[int], cache: str) -> None:
        super().__init__()
        self.uses, self.cache = uses, cache

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
        if id(original_node) in self.uses:
            return updated_node.with_changes(value=self.cache)
        return updated_node
