"""Mutants of a function's source: the small wrong edits a gate must notice.

Operators (each mutant applies exactly one):

- ``binop``: an arithmetic operator swapped (``+``/``-``, ``*``/``//``, ``//``/``/``,
  ``%``/``//``), augmented assignments included;
- ``compare``: a comparison swapped (``<``/``<=``, ``>``/``>=``, ``<``/``>``,
  ``==``/``!=``, ``in``/``not in``, ``is``/``is not``);
- ``boolop``: ``and``/``or`` swapped; ``not`` dropped;
- ``constant``: an integer off by one either way, ``True``/``False`` flipped, a string
  changed (the docstring is left alone);
- ``branch``: an ``if`` body dropped, its ``else`` dropped, or its test made
  always true or always false;
- ``statement``: one statement dropped;
- ``reorder``: two adjacent statements swapped;
- ``return``: a returned value replaced by ``None``.

Mutants are produced with :mod:`ast` and rendered with :func:`ast.unparse`; those
that render to the original's text, repeat another mutant or do not compile
are left out.
"""

from __future__ import annotations

import ast
import copy
import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

_BINOP_SWAPS: dict[type, tuple[type, ...]] = {
    ast.Add: (ast.Sub,), ast.Sub: (ast.Add,), ast.Mult: (ast.FloorDiv,),
    ast.FloorDiv: (ast.Div, ast.Mult), ast.Div: (ast.FloorDiv,), ast.Mod: (ast.FloorDiv,),
}
_COMPARE_SWAPS: dict[type, tuple[type, ...]] = {
    ast.Lt: (ast.LtE, ast.Gt), ast.LtE: (ast.Lt, ast.GtE), ast.Gt: (ast.GtE, ast.Lt),
    ast.GtE: (ast.Gt, ast.LtE), ast.Eq: (ast.NotEq,), ast.NotEq: (ast.Eq,),
    ast.In: (ast.NotIn,), ast.NotIn: (ast.In,), ast.Is: (ast.IsNot,), ast.IsNot: (ast.Is,),
}
_BODIES = ("body", "orelse", "finalbody")


@dataclass(frozen=True)
class Mutant:
    """One mutant: the operator, where and what it changed, and the new source."""

    operator: str
    description: str
    line: int
    source: str

    def diff(self, original: str) -> str:
        """A unified diff from the original (both as rendered by ast, so only the edit shows)."""
        before = (ast.unparse(ast.parse(original)) + "\n").splitlines(keepends=True)
        after = self.source.splitlines(keepends=True)
        return "".join(difflib.unified_diff(before, after, "original", "mutant", n=1))


Edit = tuple[str, str, int, Callable[[ast.Module], None]]


def mutants(source: str) -> list[Mutant]:
    """Every distinct, compilable single-edit mutant of the function in ``source``."""
    tree = ast.parse(source)
    baseline = ast.unparse(tree)
    seen = {baseline}
    out: list[Mutant] = []
    for operator, description, line, apply in _edits(tree):
        mutated = copy.deepcopy(tree)
        apply(mutated)
        ast.fix_missing_locations(mutated)
        try:
            text = ast.unparse(mutated)
            compile(text, "<mutant>", "exec")
        except (SyntaxError, ValueError, TypeError):
            continue
        if text in seen:
            continue
        seen.add(text)
        out.append(Mutant(operator, description, line, text + "\n"))
    return out


def _edits(tree: ast.Module) -> Iterator[Edit]:
    """Edits addressed by position in ``ast.walk`` order, so they apply to a deep copy."""
    docstrings = _docstring_ids(tree)
    for index, node in enumerate(ast.walk(tree)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.BinOp, ast.AugAssign)):
            for new in _BINOP_SWAPS.get(type(node.op), ()):
                yield ("binop", f"{_sym(node.op)} -> {_sym(new())}", line,
                       _set_attr(index, "op", new))
        elif isinstance(node, ast.Compare):
            for position, op in enumerate(node.ops):
                for new in _COMPARE_SWAPS.get(type(op), ()):
                    yield ("compare", f"{_sym(op)} -> {_sym(new())}", line,
                           _set_compare(index, position, new))
        elif isinstance(node, ast.BoolOp):
            new = ast.Or if isinstance(node.op, ast.And) else ast.And
            yield "boolop", f"{_sym(node.op)} -> {_sym(new())}", line, _set_attr(index, "op", new)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield "boolop", "not dropped", line, _replace_with_child(index, "operand")
        elif isinstance(node, ast.Constant) and id(node) not in docstrings:
            for value, text in _constant_changes(node.value):
                yield "constant", f"{node.value!r} -> {text}", line, _set_attr(index, "value",
                                                                                value)
        elif isinstance(node, ast.Return) and node.value is not None and \
                not (isinstance(node.value, ast.Constant) and node.value.value is None):
            yield "return", "returns None", line, _set_attr(index, "value", None)
        if isinstance(node, ast.If):
            yield "branch", "if body dropped", line, _set_body(index, "body", [ast.Pass()])
            if node.orelse:
                yield "branch", "else dropped", line, _set_body(index, "orelse", [])
            yield "branch", "if test always true", line, _set_attr(
                index, "test", ast.Constant(True))
            yield "branch", "if test always false", line, _set_attr(
                index, "test", ast.Constant(False))
        for field in _BODIES:
            body = getattr(node, field, None)
            if not isinstance(body, list) or not body or not isinstance(body[0], ast.stmt):
                continue
            if isinstance(node, ast.Module):
                continue
            for position, statement in enumerate(body):
                if id(statement) in docstrings:
                    continue
                yield ("statement", f"statement dropped: {_head(statement)}", statement.lineno,
                       _drop(index, field, position))
                if position + 1 < len(body):
                    yield ("reorder", f"swapped with the next: {_head(statement)}",
                           statement.lineno, _swap(index, field, position))


def _docstring_ids(tree: ast.Module) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and \
                node.body and isinstance(node.body[0], ast.Expr) and \
                isinstance(node.body[0].value, ast.Constant) and \
                isinstance(node.body[0].value.value, str):
            found |= {id(node.body[0]), id(node.body[0].value)}
    return found


def _constant_changes(value: object) -> list[tuple[object, str]]:
    if isinstance(value, bool):
        return [(not value, repr(not value))]
    if isinstance(value, int):
        return [(value + 1, repr(value + 1)), (value - 1, repr(value - 1))]
    if isinstance(value, str):
        changed = value[:-1] if value else "x"
        return [(changed, repr(changed))]
    return []


def _nth(tree: ast.Module, index: int) -> ast.AST:
    for position, node in enumerate(ast.walk(tree)):
        if position == index:
            return node
    raise IndexError(index)


def _set_attr(index: int, name: str, value: object
              ) -> Callable[[ast.Module], None]:
    def apply(tree: ast.Module) -> None:
        node = _nth(tree, index)
        new = value() if isinstance(value, type) else copy.deepcopy(value)
        setattr(node, name, new)

    return apply


def _set_compare(index: int, position: int, op: type) -> Callable[[ast.Module], None]:
    def apply(tree: ast.Module) -> None:
        node = _nth(tree, index)
        assert isinstance(node, ast.Compare)
        node.ops[position] = op()

    return apply


def _replace_with_child(index: int, child: str) -> Callable[[ast.Module], None]:
    """Replace the node by its ``child`` (``not x`` -> ``x``), wherever its parent holds it."""

    def apply(tree: ast.Module) -> None:
        target = _nth(tree, index)
        replacement = getattr(target, child)
        for parent in ast.walk(tree):
            for field, value in ast.iter_fields(parent):
                if value is target:
                    setattr(parent, field, replacement)
                elif isinstance(value, list):
                    value[:] = [replacement if item is target else item for item in value]

    return apply


def _set_body(index: int, field: str, body: list[ast.stmt]) -> Callable[[ast.Module], None]:
    def apply(tree: ast.Module) -> None:
        setattr(_nth(tree, index), field, copy.deepcopy(body))

    return apply


def _drop(index: int, field: str, position: int) -> Callable[[ast.Module], None]:
    def apply(tree: ast.Module) -> None:
        body = getattr(_nth(tree, index), field)
        del body[position]
        if not body and field == "body":
            body.append(ast.Pass())

    return apply


def _swap(index: int, field: str, position: int) -> Callable[[ast.Module], None]:
    def apply(tree: ast.Module) -> None:
        body = getattr(_nth(tree, index), field)
        body[position], body[position + 1] = body[position + 1], body[position]

    return apply


def _head(statement: ast.stmt) -> str:
    text = ast.unparse(statement).splitlines()[0]
    return text if len(text) <= 60 else text[:59] + "…"


_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Div: "/",
            ast.Mod: "%", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
            ast.Eq: "==", ast.NotEq: "!=", ast.In: "in", ast.NotIn: "not in", ast.Is: "is",
            ast.IsNot: "is not", ast.And: "and", ast.Or: "or"}


def _sym(op: ast.AST) -> str:
    return _SYMBOLS.get(type(op), type(op).__name__)
