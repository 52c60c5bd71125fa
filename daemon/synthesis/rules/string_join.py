"""string-concat-join: a string built with ``+=`` in a loop is joined once instead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import libcst as cst
import libcst.matchers as m

from daemon.synthesis.rules import edit
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.rule import Rule
from daemon.synthesis.rules.shapes import assigned_name, escaping_jump, single_small


@dataclass(frozen=True)
class _Site:
    node: cst.AugAssign | cst.Assign  # the `s += e` or `s = s + e + ...`
    target: cst.Name
    read: cst.Name | None  # the `s` in `s + e`
    part: cst.BaseExpression
    in_loop: bool


class StringConcatJoin(Rule):
    """Collects the pieces of a string in a list and joins them once.

    ::

        s = "head"                    s_parts = ["head"]
        for x in xs:           ->     for x in xs:
            s += f(x)                     s_parts.append(f(x))
        s += "tail"                   s_parts.append("tail")
        return s                      s = "".join(s_parts)
                                      return s

    The region starts at ``s = <str literal>`` and runs over the following
    statements of the same block while every use of ``s`` in them is a
    ``s += e`` or ``s = s + e + ...`` (at any depth: under ``if``, in nested loops); the
    join goes before the first statement that uses ``s`` otherwise, or at the end
    of the block.

    Preconditions checked syntactically:

    - the initial value is a ``str`` literal (not bytes); at least one ``+=`` is in a loop;
    - ``s`` is not read in the region other than as the left operand of ``s + e``,
      not bound there otherwise, and no lambda, nested function or lazy generator
      mentions it;
    - no statement in the region can ``break`` or ``continue`` past the join;
    - the region is not inside ``try`` or ``with`` (an exception half way would leave
      ``s`` partly built in the original, unbuilt in the rewrite).

    Runtime precondition (gate-checked): every piece is a ``str`` (or a subclass
    without ``__radd__``). With a non-string piece both raise ``TypeError``, but the
    rewrite raises it at the join instead of at the ``+=``.
    """

    id: ClassVar[str] = "string-concat-join"
    summary: ClassVar[str] = "collect string pieces in a list and join once instead of +="

    def rewrite(self, fn: Function) -> cst.Module | None:
        for block in fn.blocks():
            for index, statement in enumerate(block.body):
                init = single_small(statement)
                bound = assigned_name(init)
                if bound is None or not _str_literal(bound[1]):
                    continue
                result = self._site(fn, block, index, bound[0])
                if result is not None:
                    return result
        return None

    def _site(self, fn: Function, block: cst.IndentedBlock, index: int,
              name: str) -> cst.Module | None:
        if not fn.is_local(name) or fn.guarded(block.body[index]):
            return None
        reads, stores = fn.reads(name), fn.stores(name)
        sites: list[_Site] = []
        end = index + 1
        while end < len(block.body):
            statement = block.body[end]
            found = _sites(fn, block, statement, name)
            own_reads = {id(r) for r in reads if fn.within(r, statement)}
            own_stores = {id(s) for s in stores if fn.within(s, statement)}
            if (own_stores != {id(s.target) for s in found}
                    or own_reads != {id(s.read) for s in found if s.read is not None}
                    or escaping_jump(statement)):
                break
            sites.extend(found)
            end += 1
        if not any(site.in_loop for site in sites):
            return None
        init = single_small(block.body[index])
        bound = assigned_name(init)
        assert bound is not None
        literal = bound[1]
        parts = fn.fresh(f"{name}_parts")
        empty = isinstance(literal, cst.SimpleString) and literal.evaluated_value == ""
        start = f"{parts} = []" if empty else f"{parts} = [{fn.code(literal)}]"
        annotation = (f": {fn.code(init.annotation.annotation)}"
                      if isinstance(init, cst.AnnAssign) else "")
        join = edit.statement(fn, f'{name}{annotation} = "".join({parts})')
        appends = {id(site.node): edit.small(fn, f"{parts}.append({fn.code(site.part)})")
                   for site in sites}
        transformer = _Rewrite(block, appends, index, edit.statement(fn, start), end, join)
        result = fn.module.visit(transformer)
        return result if isinstance(result, cst.Module) else None


class _Rewrite(cst.CSTTransformer):
    def __init__(self, block: cst.IndentedBlock, appends: dict[int, cst.BaseSmallStatement],
                 init_at: int, init: cst.BaseStatement, join_at: int,
                 join: cst.BaseStatement) -> None:
        super().__init__()
        self.block, self.appends = block, appends
        self.init_at, self.init, self.join_at, self.join = init_at, init, join_at, join

    def leave_AugAssign(self, original_node: cst.AugAssign,
                        updated_node: cst.AugAssign) -> cst.BaseSmallStatement:
        return self._site(original_node, updated_node)

    def leave_Assign(self, original_node: cst.Assign,
                     updated_node: cst.Assign) -> cst.BaseSmallStatement:
        return self._site(original_node, updated_node)

    def _site(self, original: cst.AugAssign | cst.Assign,
              updated: cst.AugAssign | cst.Assign) -> cst.BaseSmallStatement:
        new = self.appends.get(id(original))
        if new is None:
            return updated
        return new.with_changes(semicolon=updated.semicolon)

    def leave_IndentedBlock(self, original_node: cst.IndentedBlock,
                            updated_node: cst.IndentedBlock) -> cst.IndentedBlock:
        if original_node is not self.block:
            return updated_node
        body = list(updated_node.body)
        if self.join_at < len(body):
            edit.insert_before(body, self.join_at, self.join)
        else:
            body.append(self.join)
        edit.replace_at(body, self.init_at, self.init)
        return updated_node.with_changes(body=body)


def _str_literal(node: cst.BaseExpression) -> bool:
    if isinstance(node, cst.SimpleString):
        return "b" not in node.prefix.lower()
    return isinstance(node, cst.FormattedString)


def _sites(fn: Function, block: cst.IndentedBlock, statement: cst.BaseStatement,
           name: str) -> list[_Site]:
    finder = _SiteFinder(fn, block, name)
    statement.visit(finder)
    return finder.found


class _SiteFinder(cst.CSTVisitor):
    def __init__(self, fn: Function, block: cst.IndentedBlock, name: str) -> None:
        super().__init__()
        self.fn, self.block, self.name = fn, block, name
        self.found: list[_Site] = []

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        if m.matches(node, m.AugAssign(target=m.Name(self.name), operator=m.AddAssign())):
            self.found.append(_Site(node, cst.ensure_type(node.target, cst.Name), None,
                                    node.value, self._in_loop(node)))

    def visit_Assign(self, node: cst.Assign) -> None:
        if not (len(node.targets) == 1 and m.matches(node.targets[0].target, m.Name(self.name))):
            return
        # s = s + a + b parses as ((s + a) + b): find the innermost `s + a`
        inner = node.value
        while isinstance(inner, cst.BinaryOperation) and isinstance(inner.operator, cst.Add):
            if m.matches(inner.left, m.Name(self.name)):
                piece = inner.right if inner is node.value else node.value.deep_replace(
                    inner, inner.right)
                assert isinstance(piece, cst.BaseExpression)
                self.found.append(_Site(node, cst.ensure_type(node.targets[0].target, cst.Name),
                                        cst.ensure_type(inner.left, cst.Name), piece,
                                        self._in_loop(node)))
                return
            inner = inner.left

    def _in_loop(self, node: cst.CSTNode) -> bool:
        """Whether ``node`` runs in a loop that starts inside the region's block."""
        for ancestor in self.fn.ancestors(node):
            if ancestor is self.block:
                return False
            if isinstance(ancestor, (cst.For, cst.While)):
                return True
        return False

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False
