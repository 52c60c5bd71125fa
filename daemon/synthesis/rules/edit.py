"""Small, comment-preserving edits of statement lists.

New code is written as text and parsed with the module's own parser settings
(indentation, newlines), so it reads like the code around it. Comments of
statements a rule removes or replaces are carried over to the statement that
takes their place rather than dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.shapes import single_small


def statement(fn: Function, text: str) -> cst.BaseStatement:
    return cst.parse_statement(text, config=fn.module.config_for_parsing)


def small(fn: Function, text: str) -> cst.BaseSmallStatement:
    parsed = statement(fn, text)
    assert isinstance(parsed, cst.SimpleStatementLine)
    return parsed.body[0]


def expression(fn: Function, text: str) -> cst.BaseExpression:
    return cst.parse_expression(text, config=fn.module.config_for_parsing)


class _Comments(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[cst.Comment] = []

    def visit_Comment(self, node: cst.Comment) -> None:
        self.found.append(node)


def leading_lines(statement: cst.BaseStatement) -> Sequence[cst.EmptyLine]:
    if isinstance(statement, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
        return statement.leading_lines
    return ()


def comment_lines(old: cst.BaseStatement) -> list[cst.EmptyLine]:
    """The lines above ``old`` and every comment inside it, as lines to put elsewhere."""
    own = list(leading_lines(old))
    own_comments = {id(line.comment) for line in own if line.comment is not None}
    finder = _Comments()
    old.visit(finder)
    inner = [cst.EmptyLine(comment=c) for c in finder.found if id(c) not in own_comments]
    return own + inner


def with_leading(new: cst.BaseStatement, lines: Sequence[cst.EmptyLine]) -> cst.BaseStatement:
    """``new`` with ``lines`` added above the lines it already has."""
    if not lines:
        return new
    return new.with_changes(leading_lines=[*lines, *leading_lines(new)])


def replace_at(body: list[cst.BaseStatement], at: int, new: cst.BaseStatement) -> None:
    """Put ``new`` in place of ``body[at]``, keeping the old statement's comments."""
    body[at] = with_leading(new, comment_lines(body[at]))


def remove_at(body: list[cst.BaseStatement], at: int) -> None:
    """Drop ``body[at]``; its comments move to the statement that follows it."""
    gone = body.pop(at)
    if at < len(body):
        body[at] = with_leading(body[at], comment_lines(gone))


def insert_before(body: list[cst.BaseStatement], at: int, new: cst.BaseStatement) -> None:
    """Insert ``new`` before ``body[at]``, above the comments that introduce it."""
    old = body[at]
    body[at] = old.with_changes(leading_lines=[])
    body.insert(at, with_leading(new, leading_lines(old)))


def bind_instead(fn: Function, block: cst.IndentedBlock, index: int, init_at: int,
                 init: cst.BaseSmallStatement, name: str, value: str) -> cst.Module:
    """``block.body[index]`` becomes ``name = value`` and the initialisation at ``init_at``
    goes; an annotation on the initialisation is kept on the new binding."""
    if isinstance(init, cst.AnnAssign):
        new = statement(fn, f"{name}: {fn.code(init.annotation.annotation)} = {value}")
    else:
        new = statement(fn, f"{name} = {value}")
    body = list(block.body)
    replace_at(body, index, new)
    remove_at(body, init_at)
    return replace_block(fn, block, body)


def replace_block(fn: Function, block: cst.IndentedBlock,
                  body: Sequence[cst.BaseStatement]) -> cst.Module:
    replaced = fn.module.deep_replace(block, block.with_changes(body=list(body)))
    assert isinstance(replaced, cst.Module)
    return replaced


def replace_node(fn: Function, old: cst.CSTNode, new: cst.CSTNode) -> cst.Module:
    replaced = fn.module.deep_replace(old, new)
    assert isinstance(replaced, cst.Module)
    return replaced


def has_function_import(module: cst.Module, text: str) -> bool:
    """Whether ``text`` (an import) is among the function's first statements."""
    fdef = module.body[0]
    if not (isinstance(fdef, cst.FunctionDef) and isinstance(fdef.body, cst.IndentedBlock)):
        return False
    return any(module.code_for_node(s).strip() == text for s in fdef.body.body[:2])


def add_function_import(module: cst.Module, text: str) -> cst.Module:
    """Add ``text`` (an import) as the first statement of the function, after its docstring."""
    fdef = module.body[0]
    assert isinstance(fdef, cst.FunctionDef) and isinstance(fdef.body, cst.IndentedBlock)
    body = list(fdef.body.body)
    new = cst.parse_statement(text, config=module.config_for_parsing)
    if has_function_import(module, text):
        return module
    at = 1 if body and _is_docstring(body[0]) else 0
    body.insert(at, new)
    return module.with_changes(body=[fdef.with_changes(body=fdef.body.with_changes(body=body))])


def _is_docstring(statement: cst.BaseStatement) -> bool:
    only = single_small(statement)
    return isinstance(only, cst.Expr) and isinstance(
        only.value, (cst.SimpleString, cst.ConcatenatedString))
