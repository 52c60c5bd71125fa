"""append-to-comprehension: a loop that only appends becomes a list comprehension."""

from __future__ import annotations

from typing import ClassVar

import libcst as cst
import libcst.matchers as m

from daemon.synthesis.rules import edit
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.preconditions import confined, local_init, stored_within
from daemon.synthesis.rules.rule import ForLoopRule
from daemon.synthesis.rules.shapes import (
    movable,
    parenthesized,
    plain_for,
    single_statement,
    target_names,
)

_APPEND = m.Call(func=m.Attribute(value=m.Name(), attr=m.Name("append")),
                 args=[m.Arg(keyword=None, star="")])
_MAX_DEPTH = 4


class AppendToComprehension(ForLoopRule):
    """Builds a list with a comprehension instead of ``append`` calls in a loop.

    ::

        out = []                      out = [f(x) for x in xs if p(x)]
        for x in xs:           ->
            if p(x):
                out.append(f(x))

    Nested ``for`` loops and ``if`` guards become further clauses, in order.

    Preconditions checked syntactically:

    - ``out = []`` (an empty list display, optionally annotated) binds ``out`` earlier
      in the same block; statements in between do not mention ``out`` and cannot
      ``break`` or ``continue`` out of the block;
    - the loop body is a chain of ``for`` (no ``else``) and ``if`` (no ``else``)
      statements, each the only statement of its parent, ending in one
      ``out.append(<expr>)`` call with one positional argument;
    - ``out`` is read nowhere else in the loop (not even in the iterable), is not
      bound there, and no lambda, nested function or lazy generator mentions it;
    - the loop variables are not read after the loop (the comprehension does not
      leave them bound), except inside other ``for`` loops that rebind them;
    - the element, guards and inner iterables contain no ``yield``, ``await``,
      lambda, zero-argument ``super()`` or walrus rebinding a loop variable;
    - the loop is not inside ``try`` or ``with``: a loop that raises half way leaves
      ``out`` partly filled, the comprehension leaves it unbound.

    Runtime preconditions: none. One error path differs in type only: reading an
    unbound local inside the element raises ``NameError`` from the comprehension
    where the loop raised its subclass ``UnboundLocalError``.
    """

    id: ClassVar[str] = "append-to-comprehension"
    summary: ClassVar[str] = "build the list with a comprehension instead of append() in a loop"

    def site(self, fn: Function, block: cst.IndentedBlock, index: int,
              statement: cst.For) -> cst.Module | None:
        loop = plain_for(statement)
        chain = _chain(loop) if loop is not None else None
        if loop is None or chain is None:
            return None
        clauses, element, receiver = chain
        name = receiver.value
        found_init = local_init(fn, block, index, name, m.List(elements=[]))
        if found_init is None or fn.guarded(loop):
            return None
        init_at, init = found_init
        reads = [r for r in fn.reads(name) if fn.within(r, loop)]
        if len(reads) != 1 or reads[0] is not receiver or stored_within(fn, name, loop):
            return None
        loop_names: list[str] = []
        for clause in clauses:
            if isinstance(clause, cst.For):
                names = target_names(clause.target)
                if names is None:
                    return None
                loop_names.extend(names)
        if name in loop_names or not confined(fn, loop_names, loop):
            return None
        parts = [clause.test if isinstance(clause, cst.If) else clause.iter
                 for clause in clauses]
        if not all(movable(node, loop_names) for node in [element, *parts]):
            return None
        text = "[" + parenthesized(fn, element, element=True)
        for clause in clauses:
            if isinstance(clause, cst.For):
                text += f" for {fn.code(clause.target)} in {parenthesized(fn, clause.iter)}"
            else:
                text += f" if {parenthesized(fn, clause.test)}"
        text += "]"
        return edit.bind_instead(fn, block, index, init_at, init, name, text)


def _chain(loop: cst.For) -> tuple[list[cst.For | cst.If], cst.BaseExpression, cst.Name] | None:
    clauses: list[cst.For | cst.If] = [loop]
    suite = loop.body
    for _ in range(_MAX_DEPTH):
        only = single_statement(suite)
        if (isinstance(only, cst.If) and only.orelse is None) or (
                isinstance(only, cst.For) and plain_for(only) is not None):
            clauses.append(only)
            suite = only.body
        elif isinstance(only, cst.Expr) and m.matches(only.value, _APPEND):
            call = cst.ensure_type(only.value, cst.Call)
            receiver = cst.ensure_type(cst.ensure_type(call.func, cst.Attribute).value, cst.Name)
            return clauses, call.args[0].value, receiver
        else:
            return None
    return None
