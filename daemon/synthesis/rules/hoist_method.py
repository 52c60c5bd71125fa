"""hoist-method-lookup: a container's method called in a loop is looked up once."""

from __future__ import annotations

from typing import ClassVar

import libcst as cst

from daemon.synthesis.rules import edit
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.preconditions import last_binding, stored_within
from daemon.synthesis.rules.rule import Rule
from daemon.synthesis.rules.shapes import assigned_name, single_small

# Methods worth binding once, by the builtin type the display creates. Not list.append
# or set.add: CPython 3.11+ specialises those calls in place (CALL_NO_KW_LIST_APPEND),
# and a bound method in a local is measurably slower than that.
METHODS: dict[str, frozenset[str]] = {
    "dict": frozenset({"get", "setdefault"}),
}
_ALL_METHODS = frozenset().union(*METHODS.values())


class HoistMethodLookup(Rule):
    """Binds ``d.get`` (or ``d.setdefault``) to a local once instead of on every pass.

    ::

        firsts = {}                             firsts = {}
        for i, w in enumerate(words):   ->      firsts_get = firsts.get
            firsts[w] = firsts.get(w, i)        for i, w in enumerate(words):
                                                    firsts[w] = firsts_get(w, i)

    A later loop reuses a binding made for an earlier one while both names still
    hold. Only dict methods: the interpreter already specialises ``list.append``
    and ``set.add`` calls, which a bound method would make slower.

    Why this is exact: the dict is a builtin dict (bound by a display, a
    comprehension or a call of the builtin ``dict``), whose methods no instance
    can override, and it is the same object on every pass, so the bound method is
    the same; looking it up can neither fail nor have effects, even if the loop
    never runs.

    Preconditions checked syntactically:

    - the dict is bound earlier in the same block by ``name = {..}`` /
      ``dict(..)`` / a dict comprehension, not rebound or deleted between there and
      the loop, nor in the loop; no lambda, nested function or lazy generator
      mentions it;
    - the method is called directly (``name.append(...)``), outside lambdas and
      nested functions.

    Runtime preconditions: none.
    """

    id: ClassVar[str] = "hoist-method-lookup"
    summary: ClassVar[str] = "bind a dict method to a local once instead of on every pass"

    def rewrite(self, fn: Function) -> cst.Module | None:
        for block, index, loop in fn.loops():
            finder = _MethodCalls()
            loop.body.visit(finder)
            groups: dict[tuple[str, str], list[cst.Attribute]] = {}
            for attribute in finder.found:
                if not fn.lazy(attribute):
                    receiver = attribute.value
                    assert isinstance(receiver, cst.Name)
                    key = (receiver.value, attribute.attr.value)
                    groups.setdefault(key, []).append(attribute)
            for (name, method), sites in groups.items():
                if not self._applies(fn, block, index, loop, name, method):
                    continue
                new_body = list(block.body)
                bound = _earlier_binding(fn, block, index, loop, name, method)
                at = index
                if bound is None:
                    bound = fn.fresh(f"{name}_{method}")
                    edit.insert_before(new_body, index,
                                       edit.statement(fn, f"{bound} = {name}.{method}"))
                    at += 1
                new_loop = new_body[at].visit(_Replace({id(s) for s in sites}, bound))
                assert isinstance(new_loop, cst.BaseStatement)
                new_body[at] = new_loop
                return edit.replace_block(fn, block, new_body)
        return None

    def _applies(self, fn: Function, block: cst.IndentedBlock, index: int,
                 loop: cst.For | cst.While, name: str, method: str) -> bool:
        if not fn.is_local(name) or stored_within(fn, name, loop):
            return False
        init_at = last_binding(fn, block, index, name)
        if init_at is None:
            return False
        bound = assigned_name(single_small(block.body[init_at]))
        kind = _kind(fn, bound[1]) if bound is not None else None
        return kind is not None and method in METHODS[kind]


def _earlier_binding(fn: Function, block: cst.IndentedBlock, index: int,
                     loop: cst.CSTNode, name: str, method: str) -> str | None:
    """A local already bound to ``name.method`` before the loop and still current."""
    for at in range(index - 1, -1, -1):
        statement = block.body[at]
        bound = assigned_name(single_small(statement))
        if bound is not None and isinstance(bound[1], cst.Attribute) \
                and isinstance(bound[1].value, cst.Name) and bound[1].value.value == name \
                and bound[1].attr.value == method and fn.is_local(bound[0]) \
                and not any(stored_within(fn, bound[0], s)
                            for s in [*block.body[at + 1:index], loop]):
            return bound[0]
        if stored_within(fn, name, statement):
            return None
    return None


def _kind(fn: Function, value: cst.BaseExpression) -> str | None:
    if isinstance(value, (cst.Dict, cst.DictComp)):
        return "dict"
    if isinstance(value, cst.Call) and isinstance(value.func, cst.Name) \
            and value.func.value in METHODS and fn.is_builtin(value.func.value):
        return value.func.value
    return None


class _MethodCalls(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[cst.Attribute] = []

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) \
                and func.attr.value in _ALL_METHODS:
            self.found.append(func)


class _Replace(cst.CSTTransformer):
    def __init__(self, sites: set[int], bound: str) -> None:
        super().__init__()
        self.sites, self.bound = sites, bound

    def leave_Attribute(self, original_node: cst.Attribute,
                        updated_node: cst.Attribute) -> cst.BaseExpression:
        if id(original_node) in self.sites:
            return cst.Name(self.bound, lpar=updated_node.lpar, rpar=updated_node.rpar)
        return updated_node
