"""string-buffer-join: a string buffer that is flushed and reset in a loop collects its
pieces in a list, joined where the buffer is read."""

from __future__ import annotations

from typing import ClassVar

import libcst as cst

from daemon.synthesis.rules import edit
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.rule import Rule


class StringBufferJoin(Rule):
    """Appends a buffer's pieces to a list and joins them only where the buffer is read.

    ::

        tokens = []                             tokens = []
        word = ""                               word_parts = []
        for ch in text:                         for ch in text:
            if ch.isspace():                        if ch.isspace():
                if word:                                word = "".join(word_parts)
                    tokens.append(word)   ->            if word:
                word = ""                                   word = "".join(word_parts)
            else:                                           tokens.append(word)
                word += ch                              word_parts = []
        if word:                                    else:
            tokens.append(word)                         word_parts.append(ch)
        return tokens                           word = "".join(word_parts)
                                                if word:
                                                    word = "".join(word_parts)
                                                    tokens.append(word)
                                                return tokens

    Each ``word = <str literal>`` becomes ``word_parts = [<literal>]`` (``[]`` for
    ``""``), each ``word += e`` becomes ``word_parts.append(e)``, and every statement
    that reads ``word`` gets ``word = "".join(word_parts)`` right before it, so at
    every read ``word`` holds exactly the string the original built. Where the
    buffer is only read after the loop, ``string-concat-join`` applies instead.

    Preconditions checked syntactically:

    - ``word`` is a local of the function bound only by ``word = <str literal>`` and
      ``word += e`` statements (no parameter, annotation, ``for`` target, walrus or
      ``del``), and no lambda, nested function or lazy generator mentions it;
    - every read of ``word`` sits in a simple statement of an indented block, or in
      the test or one-line body of an ``if`` (not an ``elif``), the iterable of a
      ``for`` or the items of a ``with``, where the join can go right before; no
      ``+=`` or reset in that statement comes before the read; reads in a ``while``
      test are refused, since the test runs again without passing the join;
    - some loop holds both a ``+=`` and a read or a reset (the buffer is flushed in the
      loop), and in such a loop every read is under an ``if``, so the joins run at
      flush points rather than on every pass (a join per pass would cost more than
      the ``+=`` it replaces).

    Runtime precondition (gate-checked): every piece is a ``str`` (or a subclass
    without ``__radd__``). With a non-string piece both raise ``TypeError``, but the
    rewrite raises it at the next read instead of at the ``+=``.
    """

    id: ClassVar[str] = "string-buffer-join"
    summary: ClassVar[str] = "collect a flushed string buffer's pieces in a list, join at reads"

    def rewrite(self, fn: Function) -> cst.Module | None:
        finder = _Resets()
        fn.node.body.visit(finder)
        tried: set[str] = set()
        for name in finder.names:
            if name not in tried:
                tried.add(name)
                result = self._name(fn, name)
                if result is not None:
                    return result
        return None

    def _name(self, fn: Function, name: str) -> cst.Module | None:
        if not fn.is_local(name):
            return None
        resets: dict[int, cst.BaseExpression] = {}  # id of the Assign -> its literal
        appends: dict[int, cst.BaseExpression] = {}  # id of the AugAssign -> its piece
        stores: list[cst.CSTNode] = []
        for store in fn.stores(name):
            statement = _store_statement(fn, store)
            if isinstance(statement, cst.Assign):
                resets[id(statement)] = statement.value
            elif isinstance(statement, cst.AugAssign):
                appends[id(statement)] = statement.value
            else:
                return None
            stores.append(statement)
        anchors: dict[int, cst.BaseStatement] = {}
        reads = fn.reads(name)
        for read in reads:
            anchor = _anchor(fn, read)
            if anchor is None or fn.lazy(read) or any(
                    fn.within(s, anchor) and not fn.after(s, read) for s in stores):
                return None
            anchors[id(anchor)] = anchor
        if not appends or not _flushed_in_loop(fn, stores, list(anchors.values())):
            return None
        needed = {key for key, anchor in anchors.items()
                  if not _joined_above(fn, anchor, anchors, stores)}
        parts = fn.fresh(f"{name}_parts")
        join = edit.statement(fn, f'{name} = "".join({parts})')
        new_resets = {key: edit.small(fn, f"{parts} = []" if _empty(literal)
                                      else f"{parts} = [{fn.code(literal)}]")
                      for key, literal in resets.items()}
        new_appends = {key: edit.small(fn, f"{parts}.append({fn.code(piece)})")
                       for key, piece in appends.items()}
        result = fn.module.visit(_Rewrite(new_resets | new_appends, needed, join))
        return result if isinstance(result, cst.Module) else None


def _str_literal(node: cst.BaseExpression) -> bool:
    if isinstance(node, cst.SimpleString):
        return "b" not in node.prefix.lower()
    return isinstance(node, cst.FormattedString)


def _empty(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.SimpleString) and node.evaluated_value == ""


def _store_statement(fn: Function, store: cst.CSTNode) -> cst.Assign | cst.AugAssign | None:
    """The ``name = <str literal>`` or ``name += e`` statement that binds at ``store``."""
    parent = fn.parent(store)
    if isinstance(parent, cst.AugAssign) and parent.target is store \
            and isinstance(parent.operator, cst.AddAssign) \
            and isinstance(fn.parent(parent), cst.SimpleStatementLine):
        return parent
    assign = fn.parent(parent) if isinstance(parent, cst.AssignTarget) else None
    if isinstance(assign, cst.Assign) and len(assign.targets) == 1 \
            and _str_literal(assign.value) \
            and isinstance(fn.parent(assign), cst.SimpleStatementLine):
        return assign
    return None


def _anchor(fn: Function, read: cst.CSTNode) -> cst.BaseStatement | None:
    """The statement of an indented block before which the read's value can be joined."""
    child: cst.CSTNode = read
    for ancestor in fn.ancestors(read):
        if isinstance(ancestor, cst.Del):
            return None
        if isinstance(ancestor, cst.BaseSmallStatement):
            line = fn.parent(ancestor)
            if isinstance(line, cst.SimpleStatementLine):
                return line if isinstance(fn.parent(line), cst.IndentedBlock) else None
            # `if word: tokens.append(word)`: the body runs at most once after the test
            owner = fn.parent(line) if line is not None else None
            return owner if isinstance(owner, cst.If) and owner.body is line \
                and isinstance(fn.parent(owner), cst.IndentedBlock) else None
        if isinstance(ancestor, cst.BaseCompoundStatement):
            header = ((isinstance(ancestor, cst.If) and ancestor.test is child)
                      or (isinstance(ancestor, cst.For) and ancestor.iter is child)
                      or (isinstance(ancestor, cst.With) and isinstance(child, cst.WithItem)))
            return ancestor if header and isinstance(fn.parent(ancestor),
                                                     cst.IndentedBlock) else None
        child = ancestor
    return None


def _joined_above(fn: Function, anchor: cst.BaseStatement, anchors: dict[int, cst.BaseStatement],
                  stores: list[cst.CSTNode]) -> bool:
    """Whether the join before an enclosing anchor (``if word:``) still holds at ``anchor``:
    no loop lies between them and no store of the buffer comes before ``anchor`` in it."""
    for ancestor in fn.ancestors(anchor):
        if isinstance(ancestor, (cst.For, cst.While)):
            return False
        if id(ancestor) in anchors:
            return not any(fn.within(s, ancestor) and not fn.after(s, anchor) for s in stores)
    return False


def _flushed_in_loop(fn: Function, stores: list[cst.CSTNode],
                     anchors: list[cst.BaseStatement]) -> bool:
    """Whether some loop both appends and flushes, with every read in such a loop
    under an ``if`` inside it."""
    appends = [s for s in stores if isinstance(s, cst.AugAssign)]
    resets = [s for s in stores if isinstance(s, cst.Assign)]
    flushing = False
    for loop in {id(a): a for s in appends for a in fn.ancestors(s)
                 if isinstance(a, (cst.For, cst.While))}.values():
        inside = [a for a in anchors if fn.within(a, loop)]
        if not inside and not any(fn.within(r, loop) for r in resets):
            continue
        flushing = True
        for anchor in inside:
            if not any(isinstance(a, cst.If) and fn.within(a, loop) and a is not anchor
                       for a in fn.ancestors(anchor)):
                return False
    return flushing


class _Resets(cst.CSTVisitor):
    """Names bound to a ``str`` literal by a plain assignment, in source order."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def visit_Assign(self, node: cst.Assign) -> None:
        if len(node.targets) == 1 and isinstance(node.targets[0].target, cst.Name) \
                and _str_literal(node.value):
            self.names.append(node.targets[0].target.value)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False


class _Rewrite(cst.CSTTransformer):
    def __init__(self, replacements: dict[int, cst.BaseSmallStatement], anchors: set[int],
                 join: cst.BaseStatement) -> None:
        super().__init__()
        self.replacements, self.anchors, self.join = replacements, anchors, join

    def leave_Assign(self, original_node: cst.Assign,
                     updated_node: cst.Assign) -> cst.BaseSmallStatement:
        return self._replace(original_node, updated_node)

    def leave_AugAssign(self, original_node: cst.AugAssign,
                        updated_node: cst.AugAssign) -> cst.BaseSmallStatement:
        return self._replace(original_node, updated_node)

    def _replace(self, original: cst.Assign | cst.AugAssign,
                 updated: cst.Assign | cst.AugAssign) -> cst.BaseSmallStatement:
        new = self.replacements.get(id(original))
        return updated if new is None else new.with_changes(semicolon=updated.semicolon)

    def leave_IndentedBlock(self, original_node: cst.IndentedBlock,
                            updated_node: cst.IndentedBlock) -> cst.IndentedBlock:
        body: list[cst.BaseStatement] = []
        for old, new in zip(original_node.body, updated_node.body, strict=True):
            if id(old) in self.anchors:
                body.append(edit.with_leading(self.join, edit.leading_lines(new)))
                body.append(new.with_changes(leading_lines=[]))
            else:
                body.append(new)
        return updated_node.with_changes(body=body)
