"""Syntactic shapes the rules match: single statements, loop targets, bindings, and
what may move into a comprehension's scope."""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from daemon.synthesis.rules.analysis import Function


def single_statement(suite: cst.BaseSuite) -> cst.BaseStatement | cst.BaseSmallStatement | None:
    """The only statement of a suite (a compound statement or one small statement)."""
    if isinstance(suite, cst.IndentedBlock):
        if len(suite.body) != 1:
            return None
        only = suite.body[0]
        if isinstance(only, cst.SimpleStatementLine):
            return only.body[0] if len(only.body) == 1 else None
        return only
    if isinstance(suite, cst.SimpleStatementSuite) and len(suite.body) == 1:
        return suite.body[0]
    return None


def single_small(statement: cst.BaseStatement) -> cst.BaseSmallStatement | None:
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
        return statement.body[0]
    return None


def plain_for(node: cst.CSTNode | None) -> cst.For | None:
    """``node`` when it is a synchronous ``for`` loop without an ``else`` clause."""
    if isinstance(node, cst.For) and node.asynchronous is None and node.orelse is None:
        return node
    return None


def target_names(target: cst.BaseExpression) -> list[str] | None:
    """The names a ``for`` target binds, or None when it stores into anything but names."""
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        names: list[str] = []
        for element in target.elements:
            inner = target_names(element.value)
            if inner is None:
                return None
            names.extend(inner)
        return names
    return None


def assigned_name(small: cst.BaseSmallStatement | None) -> tuple[str, cst.BaseExpression] | None:
    """``(name, value)`` for ``name = value`` or ``name: T = value``, else None."""
    if isinstance(small, cst.Assign) and len(small.targets) == 1:
        target = small.targets[0].target
        if isinstance(target, cst.Name):
            return target.value, small.value
    if isinstance(small, cst.AnnAssign) and small.value is not None \
            and isinstance(small.target, cst.Name):
        return small.target.value, small.value
    return None


def is_pure(expr: cst.BaseExpression) -> bool:
    """Side-effect free by the look of it: names, constants, attribute reads and
    constant-index subscripts of such. Attribute and item reads on user types are pure
    only by convention; rules that evaluate such an expression a different number of
    times state that as a runtime precondition."""
    if isinstance(expr, (cst.Name, cst.Integer, cst.SimpleString)):
        return True
    if isinstance(expr, cst.Attribute):
        return is_pure(expr.value)
    if isinstance(expr, cst.Subscript):
        return is_pure(expr.value) and len(expr.slice) == 1 \
            and isinstance(expr.slice[0].slice, cst.Index) \
            and is_pure(expr.slice[0].slice.value) and expr.slice[0].slice.star is None
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        return isinstance(expr.expression, cst.Integer)
    return False


class _Unmovable(cst.CSTVisitor):
    def __init__(self, loop_names: frozenset[str]) -> None:
        super().__init__()
        self.loop_names = loop_names
        self.found = False

    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, (cst.Yield, cst.Await, cst.Lambda)) or (
                isinstance(node, cst.Name) and node.value in ("super", "__class__")):
            self.found = True
        elif isinstance(node, cst.NamedExpr):
            names = target_names(node.target)
            if names is None or set(names) & self.loop_names:
                self.found = True
        return not self.found


def movable(expr: cst.CSTNode, loop_names: Sequence[str] = ()) -> bool:
    """Whether ``expr`` means the same inside a comprehension's own scope.

    ``yield`` and ``await`` change meaning there, zero-argument ``super()`` loses its
    frame, a walrus may not rebind an iteration variable, and lambdas are refused
    because they bind late.
    """
    finder = _Unmovable(frozenset(loop_names))
    expr.visit(finder)
    return not finder.found


def parenthesized(fn: Function, expr: cst.BaseExpression, *, element: bool = False) -> str:
    """Source of ``expr`` safe to place in a comprehension clause or after ``in``;
    with ``element``, safe as a comprehension's element (conditional expressions are)."""
    text = fn.code(expr)
    needs: tuple[type[cst.BaseExpression], ...] = (cst.Tuple, cst.GeneratorExp, cst.NamedExpr,
                                                   cst.Yield)
    if not element:
        needs += (cst.IfExp, cst.Lambda)
    if isinstance(expr, needs) and not expr.lpar:
        return f"({text})"
    return text


def escaping_jump(statement: cst.CSTNode) -> bool:
    """Whether ``statement`` holds a ``break`` or ``continue`` that leaves it."""
    finder = _Jumps()
    statement.visit(finder)
    return finder.escapes


class _Jumps(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.escapes = False

    def visit_For(self, node: cst.For) -> bool:
        node.iter.visit(self)
        self.depth += 1
        node.body.visit(self)
        self.depth -= 1
        if node.orelse is not None:
            node.orelse.visit(self)
        return False

    def visit_While(self, node: cst.While) -> bool:
        self.depth += 1
        node.body.visit(self)
        self.depth -= 1
        if node.orelse is not None:
            node.orelse.visit(self)
        return False

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False

    def visit_Break(self, node: cst.Break) -> None:
        self.escapes = self.escapes or self.depth == 0

    def visit_Continue(self, node: cst.Continue) -> None:
        self.escapes = self.escapes or self.depth == 0
