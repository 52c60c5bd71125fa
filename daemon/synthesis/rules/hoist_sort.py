"""hoist-sort-from-loop: a loop-invariant ``sorted(v)`` is computed once per loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import libcst as cst

from daemon.synthesis.rules import edit
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.preconditions import (
    read_only_use,
    store_context,
    stored_within,
    unaliased,
)
from daemon.synthesis.rules.rule import Rule
from daemon.synthesis.rules.shapes import single_small


class HoistSortFromLoop(Rule):
    """Sorts a list that the loop does not change once, on first use, instead of per pass.

    ::

        for name, q in QUANTILES:               values_sorted = None
            ordered = sorted(values)      ->    for name, q in QUANTILES:
            out[name] = ordered[pick(q)]            if values_sorted is None:
                                                        values_sorted = sorted(values)
                                                    ordered = values_sorted
                                                    out[name] = ordered[pick(q)]

    A ``sorted(...)`` used inside an expression becomes
    ``(values_sorted if values_sorted is not None else (values_sorted := sorted(values)))``.
    The sort runs lazily, where the first one ran, so a loop that never reaches it
    (or never runs) does not sort, and an error in sorting surfaces at the same point.

    Preconditions checked syntactically:

    - the argument is a name ``v`` that the loop does not bind, delete or assign
      into, and every use of ``v`` in the loop only reads it (indexing, ``len``,
      iteration, membership, builtins that keep no handle); no lambda, nested
      function or lazy generator mentions it; elsewhere in the function it is only
      read too, or used after the loop, so no alias (``push = v.append``) exists;
    - ``key=`` and ``reverse=`` are constants, names the loop does not bind,
      attribute reads of those (whose attribute the loop does not assign), or a
      lambda over such names;
    - the sorted list itself never escapes, because after the rewrite every pass
      shares one list: each ``sorted(...)`` is only indexed, measured, iterated,
      tested for membership, given to such a builtin or ``.index``/``.count``-ed,
      or assigned to a local whose every read anywhere in the function is such a use;
    - ``sorted`` is not rebound in the function.

    Runtime preconditions (gate-checked): nothing changes ``v`` or the sort keys of
    its items during the loop through another reference (a global ``v`` changed by
    a function the loop calls, say); the key function is pure.
    """

    id: ClassVar[str] = "hoist-sort-from-loop"
    summary: ClassVar[str] = "sort a loop-invariant list once instead of on every pass"

    def rewrite(self, fn: Function) -> cst.Module | None:
        if not fn.is_builtin("sorted"):
            return None
        for block, index, loop in fn.loops():
            result = self._loop(fn, block, index, loop)
            if result is not None:
                return result
        return None

    def _loop(self, fn: Function, block: cst.IndentedBlock, index: int,
              loop: cst.For | cst.While) -> cst.Module | None:
        finder = _SortedCalls()
        loop.body.visit(finder)
        groups: dict[str, list[cst.Call]] = {}
        for call in finder.found:
            if not fn.lazy(call):
                groups.setdefault(fn.code(call), []).append(call)
        for text, calls in groups.items():
            argument = _invariant_argument(fn, calls[0], loop)
            if argument is None:
                continue
            statements: list[cst.SimpleStatementLine] = []
            for call in calls:
                use = _use(fn, call, loop)
                if use is False:
                    break
                if isinstance(use, cst.SimpleStatementLine):
                    statements.append(use)
            else:
                cache = fn.fresh(f"{argument}_sorted")
                return self._hoist(fn, block, index, loop, calls, statements, cache, text)
        return None

    def _hoist(self, fn: Function, block: cst.IndentedBlock, index: int,
               loop: cst.For | cst.While, calls: Sequence[cst.Call],
               statements: Sequence[cst.SimpleStatementLine], cache: str,
               text: str) -> cst.Module:
        lazy = edit.expression(
            fn, f"({cache} if {cache} is not None else ({cache} := {text}))")
        fill = edit.statement(fn, f"if {cache} is None:\n    {cache} = {text}\n")
        new_loop = loop.visit(_Replace({id(c) for c in calls}, {id(s) for s in statements},
                                       lazy, fill, cache))
        assert isinstance(new_loop, cst.BaseStatement)
        body = list(block.body)
        body[index] = new_loop
        edit.insert_before(body, index, edit.statement(fn, f"{cache} = None"))
        return edit.replace_block(fn, block, body)


class _SortedCalls(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[cst.Call] = []

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Name) and node.func.value == "sorted":
            self.found.append(node)


def _invariant_argument(fn: Function, call: cst.Call, loop: cst.For | cst.While) -> str | None:
    """The sorted name when ``call`` gives the same list on every pass of ``loop``."""
    positional = [a for a in call.args if a.keyword is None]
    if len(positional) != 1 or any(a.star for a in call.args):
        return None
    argument = positional[0].value
    if not isinstance(argument, cst.Name) or argument.value in fn.escaped:
        return None
    name = argument.value
    if stored_within(fn, name, loop) or not unaliased(fn, name, loop):
        return None
    for read in fn.reads(name):
        if fn.within(read, loop) and (fn.lazy(read)
                                      or not read_only_use(fn, read, known_list=False)):
            return None
    for arg in call.args:
        if arg.keyword is not None and (arg.keyword.value not in ("key", "reverse")
                                        or not _invariant(fn, arg.value, loop)):
            return None
    return name


def _invariant(fn: Function, expr: cst.BaseExpression, loop: cst.CSTNode,
               params: frozenset[str] = frozenset()) -> bool:
    if isinstance(expr, (cst.Integer, cst.SimpleString, cst.Float)):
        return True
    if isinstance(expr, cst.Name):
        if expr.value in params or expr.value not in fn.scope.assignments:
            return True  # a global or builtin: only the runtime precondition covers it
        return expr.value not in fn.escaped and not stored_within(fn, expr.value, loop)
    if isinstance(expr, cst.Attribute):
        return _invariant(fn, expr.value, loop, params) and not _attribute_stored(
            fn, expr.attr.value, loop)
    if isinstance(expr, cst.Lambda):
        signature = expr.params
        if not isinstance(signature.star_arg, cst.MaybeSentinel) or signature.star_kwarg:
            return False
        declared = [*signature.posonly_params, *signature.params, *signature.kwonly_params]
        # defaults are evaluated where the lambda is made, that is on every pass
        if any(p.default is not None and not _invariant(fn, p.default, loop, params)
               for p in declared):
            return False
        inner = params | {p.name.value for p in declared}
        finder = _Names()
        expr.body.visit(finder)
        return finder.simple and all(
            _invariant(fn, name, loop, inner) for name in finder.names)
    return False


def _attribute_stored(fn: Function, attr: str, loop: cst.CSTNode) -> bool:
    finder = _Attributes(attr)
    loop.visit(finder)
    return any(store_context(fn, node) for node in finder.found)


class _Attributes(cst.CSTVisitor):
    def __init__(self, attr: str) -> None:
        super().__init__()
        self.attr = attr
        self.found: list[cst.Attribute] = []

    def visit_Attribute(self, node: cst.Attribute) -> None:
        if node.attr.value == self.attr:
            self.found.append(node)


class _Names(cst.CSTVisitor):
    """Variable names read in an expression; ``simple`` is False for anything that binds."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[cst.Name] = []
        self.simple = True

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        node.value.visit(self)
        return False

    def visit_Arg(self, node: cst.Arg) -> bool:
        node.value.visit(self)
        return False

    def visit_Name(self, node: cst.Name) -> None:
        self.names.append(node)

    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, (cst.Lambda, cst.NamedExpr, cst.Yield, cst.Await, cst.CompFor)):
            self.simple = False
            return False
        return super().on_visit(node)


def _use(fn: Function, call: cst.Call, loop: cst.CSTNode) -> cst.SimpleStatementLine | bool:
    """How the list from ``call`` is used: False when it may escape or change; the
    statement when it is ``name = sorted(...)`` at the top of the loop body; else True."""
    if _in_comprehension_iterable(fn, call):
        return False  # the walrus of the lazy form is not allowed there
    if read_only_use(fn, call, known_list=True):
        return True
    assign = fn.parent(call)
    if not (isinstance(assign, cst.Assign) and assign.value is call and len(assign.targets) == 1
            and isinstance(assign.targets[0].target, cst.Name)):
        return False
    name = assign.targets[0].target.value
    if not fn.is_local(name) or any(
            fn.lazy(r) or not read_only_use(fn, r, known_list=True) for r in fn.reads(name)):
        return False
    line = fn.parent(assign)
    body = getattr(loop, "body", None)
    if isinstance(line, cst.SimpleStatementLine) and single_small(line) is assign \
            and isinstance(body, cst.IndentedBlock) and any(s is line for s in body.body):
        return line
    return True


def _in_comprehension_iterable(fn: Function, node: cst.CSTNode) -> bool:
    child = node
    for ancestor in fn.ancestors(node):
        if isinstance(ancestor, cst.CompFor) and ancestor.iter is child:
            return True
        child = ancestor
    return False


class _Replace(cst.CSTTransformer):
    def __init__(self, calls: set[int], statements: set[int], lazy: cst.BaseExpression,
                 fill: cst.BaseStatement, cache: str) -> None:
        super().__init__()
        self.calls, self.statements = calls, statements
        self.lazy, self.fill, self.cache = lazy, fill, cache
        self.lines: set[int] = set()

    def leave_Call(self, original_node: cst.Call,
                   updated_node: cst.Call) -> cst.BaseExpression:
        if id(original_node) in self.calls:
            return self.lazy.with_changes(lpar=[*original_node.lpar, *self.lazy.lpar],
                                          rpar=[*self.lazy.rpar, *original_node.rpar])
        return updated_node

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> bool:
        if id(node) in self.statements:
            self.lines.add(id(node))
            return False  # the whole line is rebuilt in leave_IndentedBlock
        return True

    def leave_IndentedBlock(self, original_node: cst.IndentedBlock,
                            updated_node: cst.IndentedBlock) -> cst.IndentedBlock:
        body: list[cst.BaseStatement] = []
        for old, new in zip(original_node.body, updated_node.body, strict=True):
            if id(old) in self.lines and isinstance(old, cst.SimpleStatementLine):
                assign = cst.ensure_type(old.body[0], cst.Assign)
                body.append(edit.with_leading(self.fill, old.leading_lines))
                body.append(old.with_changes(leading_lines=[],
                                             body=[assign.with_changes(value=cst.Name(self.cache))]))
            else:
                body.append(new)
        return updated_node.with_changes(body=body)
