"""The building blocks of the rules' preconditions: how a name is bound, read and used.

Everything here is flow-insensitive and errs towards "no": a rule that cannot
prove its precondition from these facts leaves the code alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import libcst as cst
import libcst.matchers as m

from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.shapes import assigned_name, escaping_jump, single_small, target_names

# Builtins that only read a list passed to them and keep no way to change it.
READ_ONLY_BUILTINS = frozenset({"len", "sorted", "min", "max", "sum", "any", "all", "list",
                                "tuple", "set", "frozenset", "enumerate", "zip", "reversed",
                                "iter", "bool", "str", "repr"})

# Methods of list that never change the list.
READ_ONLY_LIST_METHODS = frozenset({"index", "count", "copy"})


def store_context(fn: Function, node: cst.CSTNode) -> bool:
    """Whether ``node`` (a subscript, attribute or name) is assigned to or deleted."""
    child = node
    parent = fn.parent(child)
    while isinstance(parent, (cst.Element, cst.StarredElement, cst.Tuple, cst.List)):
        child, parent = parent, fn.parent(parent)
    if isinstance(parent, (cst.AssignTarget, cst.Del, cst.AsName)):
        return True
    if isinstance(parent, (cst.AugAssign, cst.AnnAssign, cst.For, cst.CompFor)):
        return parent.target is child
    return False


def read_only_use(fn: Function, node: cst.CSTNode, *, known_list: bool) -> bool:
    """Whether the value at ``node`` is only read where it is used: indexed, measured,
    iterated, tested for membership or passed to a builtin that keeps no handle to
    change it. With ``known_list`` the non-mutating list methods count too."""
    parent = fn.parent(node)
    if isinstance(parent, cst.Subscript) and parent.value is node:
        return not store_context(fn, parent)
    if isinstance(parent, (cst.For, cst.CompFor)) and parent.iter is node:
        return True
    if (isinstance(parent, cst.ComparisonTarget) and parent.comparator is node) or (
            isinstance(parent, cst.Comparison) and parent.left is node):
        return True
    if truth_tested(fn, node):
        return True
    if isinstance(parent, cst.Arg) and parent.keyword is None and parent.star == "":
        call = fn.parent(parent)
        return (isinstance(call, cst.Call) and isinstance(call.func, cst.Name)
                and call.func.value in READ_ONLY_BUILTINS and fn.is_builtin(call.func.value))
    if known_list and isinstance(parent, cst.Attribute) and parent.value is node:
        call = fn.parent(parent)
        return (parent.attr.value in READ_ONLY_LIST_METHODS and isinstance(call, cst.Call)
                and call.func is parent)
    return False


def truth_tested(fn: Function, node: cst.CSTNode) -> bool:
    """Whether only the truth of the value at ``node`` is used (``if x``, ``not x``, ...)."""
    parent = fn.parent(node)
    if isinstance(parent, cst.UnaryOperation) and isinstance(parent.operator, cst.Not):
        return True
    if isinstance(parent, (cst.If, cst.While, cst.IfExp, cst.Assert)) and parent.test is node:
        return True
    return isinstance(parent, cst.BooleanOperation) and truth_tested(fn, parent)


def unaliased(fn: Function, name: str, loop: cst.For | cst.While) -> bool:
    """Whether the function can hold no other reference to ``name``'s object while ``loop`` runs.

    Every read of ``name`` outside the loop must only read it (see :func:`read_only_use`)
    or run after the loop: textually later, with no loop around both. A reference
    made any other way (``alias = xs``, ``push = xs.append``, ``f(xs)``) could change
    the object behind the loop's back.
    """
    looped = any(isinstance(a, (cst.For, cst.While)) for a in fn.ancestors(loop))
    for read in fn.reads(name):
        if fn.within(read, loop) or read_only_use(fn, read, known_list=False):
            continue
        if not looped and fn.after(read, loop):
            continue
        return False
    return True


def confined(fn: Function, names: Sequence[str], loop: cst.For) -> bool:
    """Whether the loop variables ``names`` are read nowhere outside ``loop``.

    A read inside the body of another ``for`` loop that binds the same name (and does
    not contain ``loop``) sees that loop's binding, so it does not count.
    """
    for name in names:
        if not fn.is_local(name):
            return False
        for read in fn.reads(name):
            if fn.within(read, loop):
                continue
            if not any(isinstance(a, cst.For) and a.body is b and name in (
                    target_names(a.target) or ()) and not fn.within(loop, a)
                    for b, a in _pairs(fn, read)):
                return False
    return True


def _pairs(fn: Function, node: cst.CSTNode) -> Iterator[tuple[cst.CSTNode, cst.CSTNode]]:
    child = node
    for ancestor in fn.ancestors(node):
        yield child, ancestor
        child = ancestor


def stored_within(fn: Function, name: str, node: cst.CSTNode) -> bool:
    """Whether ``name`` is bound or deleted anywhere under ``node``."""
    if any(fn.within(store, node) for store in fn.stores(name)):
        return True
    return any(fn.within(read, node) and any(isinstance(a, cst.Del) for a in fn.ancestors(read))
               for read in fn.reads(name))


def preceding_init(fn: Function, block: cst.IndentedBlock, index: int,
                   name: str) -> int | None:
    """Index of the statement before ``block.body[index]`` that last binds ``name``.

    Only statements in between that do not mention ``name`` at all and cannot jump
    out of the block (``break``/``continue``) are stepped over, so the value bound
    there is the value at ``index``.
    """
    for at in range(index - 1, -1, -1):
        statement = block.body[at]
        small = single_small(statement)
        bound = assigned_name(small)
        if bound is not None and bound[0] == name:
            return at
        if fn.mentions(statement, name) or escaping_jump(statement):
            return None
    return None


def local_init(fn: Function, block: cst.IndentedBlock, index: int, name: str,
               value: m.BaseMatcherNode) -> tuple[int, cst.BaseSmallStatement] | None:
    """The statement before ``block.body[index]`` that binds the local ``name`` to ``value``.

    Returns its index in ``block.body`` and the assignment itself, or None when
    ``name`` is not a local of the function, its last binding is not found by
    :func:`preceding_init`, or the value bound there does not match ``value``.
    """
    at = preceding_init(fn, block, index, name)
    if at is None or not fn.is_local(name):
        return None
    init = single_small(block.body[at])
    bound = assigned_name(init)
    if init is None or bound is None or not m.matches(bound[1], value):
        return None
    return at, init


def last_binding(fn: Function, block: cst.IndentedBlock, index: int,
                 name: str) -> int | None:
    """Index of the statement before ``block.body[index]`` that last binds ``name``.

    Statements in between may read ``name`` but must not bind or delete it.
    """
    for at in range(index - 1, -1, -1):
        statement = block.body[at]
        bound = assigned_name(single_small(statement))
        if bound is not None and bound[0] == name:
            return at
        if stored_within(fn, name, statement):
            return None
    return None
