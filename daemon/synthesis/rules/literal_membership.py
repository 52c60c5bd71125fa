"""list-literal-membership: ``x in [a, b, c]`` of constants becomes a set lookup."""

from __future__ import annotations

from typing import ClassVar

import libcst as cst

from daemon.synthesis.rules import edit
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.rule import Rule

# Below this many elements a tuple scan is as fast as hashing; the compiler already
# turns a constant list after ``in`` into a tuple.
MIN_ELEMENTS = 3


class ListLiteralMembership(Rule):
    """Tests membership in a set literal instead of a list or tuple literal of constants.

    ``method in ["GET", "HEAD", "OPTIONS"]`` -> ``method in {"GET", "HEAD", "OPTIONS"}``
    (likewise ``not in`` and parenthesised tuples); the compiler makes the set a
    frozenset constant, so each test hashes once instead of comparing element by element.

    Preconditions checked syntactically: at least three elements, every one a string,
    bytes, integer (optionally negated), ``True``, ``False`` or ``None`` literal. Floats
    and complex literals are refused: ``nan`` and numeric tower quirks make set and list
    membership differ.

    Runtime preconditions (gate-checked by differential replay): the tested value is
    hashable (a list raises ``TypeError`` against a set, not against a list) and its
    ``__eq__`` agrees with its ``__hash__`` (true of str, bytes, int, bool, None and
    tuples of those). Equal-comparing constants such as ``1`` and ``True`` behave the
    same in both: membership only asks whether some element is equal.
    """

    id: ClassVar[str] = "list-literal-membership"
    summary: ClassVar[str] = "test membership in a set literal instead of a list of constants"

    def rewrite(self, fn: Function) -> cst.Module | None:
        finder = _Targets()
        fn.module.visit(finder)
        for target in finder.found:
            literal = target.comparator
            if isinstance(literal, cst.List):
                return edit.replace_node(fn, literal, cst.Set(
                    elements=literal.elements,
                    lbrace=cst.LeftCurlyBrace(whitespace_after=literal.lbracket.whitespace_after),
                    rbrace=cst.RightCurlyBrace(
                        whitespace_before=literal.rbracket.whitespace_before),
                    lpar=literal.lpar, rpar=literal.rpar))
            if isinstance(literal, cst.Tuple) and literal.lpar:
                return edit.replace_node(fn, literal, cst.Set(
                    elements=literal.elements,
                    lbrace=cst.LeftCurlyBrace(whitespace_after=literal.lpar[0].whitespace_after),
                    rbrace=cst.RightCurlyBrace(
                        whitespace_before=literal.rpar[-1].whitespace_before),
                    lpar=literal.lpar[1:], rpar=literal.rpar[:-1]))
        return None


class _Targets(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[cst.ComparisonTarget] = []

    def visit_ComparisonTarget(self, node: cst.ComparisonTarget) -> None:
        literal = node.comparator
        if isinstance(node.operator, (cst.In, cst.NotIn)) and isinstance(
                literal, (cst.List, cst.Tuple)) and len(literal.elements) >= MIN_ELEMENTS \
                and all(isinstance(e, cst.Element) and _constant(e.value)
                        for e in literal.elements):
            self.found.append(node)


def _constant(node: cst.BaseExpression) -> bool:
    """A literal whose hash agrees with its equality: str, bytes, int, bool, None."""
    if isinstance(node, (cst.SimpleString, cst.Integer)):
        return True
    if isinstance(node, cst.ConcatenatedString):
        return _constant(node.left) and _constant(node.right)
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, (cst.Minus, cst.Plus)):
        return isinstance(node.expression, cst.Integer)
    return isinstance(node, cst.Name) and node.value in ("True", "False", "None")
