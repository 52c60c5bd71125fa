"""The shape of a candidate's function: its signature, its own scope, what it binds and stores.

Pure helpers over a function's syntax tree for the static gate
(:mod:`envelope.static`): whether a candidate keeps the original's signature,
which nodes belong to the function's own scope (not to nested functions or
classes), what it declares ``global`` or ``nonlocal``, which names it binds
locally, and which roots it stores into (``x.attr = ...``, ``x[i] = ...``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def all_args(args: ast.arguments) -> list[ast.arg]:
    extra = [a for a in (args.vararg, args.kwarg) if a is not None]
    return [*args.posonlyargs, *args.args, *args.kwonlyargs, *extra]


def signature_difference(new: ast.FunctionDef | ast.AsyncFunctionDef,
                          old: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    if new.name != old.name:
        return f"function is named {new.name!r}, the original {old.name!r}"
    if type(new) is not type(old):
        return "async-ness differs from the original"
    if is_generator(new) != is_generator(old):
        return "the original is " + ("" if is_generator(old) else "not ") + "a generator"
    a, b = new.args, old.args
    for kind in ("posonlyargs", "args", "kwonlyargs"):
        if [x.arg for x in getattr(a, kind)] != [x.arg for x in getattr(b, kind)]:
            return f"parameters ({kind}) differ from the original's"
    for kind in ("vararg", "kwarg"):
        x, y = getattr(a, kind), getattr(b, kind)
        if (x and x.arg) != (y and y.arg):
            return f"*{kind} differs from the original's"
    if [ast.dump(d) for d in a.defaults] != [ast.dump(d) for d in b.defaults]:
        return "default values differ from the original's"
    if [d and ast.dump(d) for d in a.kw_defaults] != [d and ast.dump(d) for d in b.kw_defaults]:
        return "keyword-only default values differ from the original's"
    if [ast.dump(d) for d in new.decorator_list] != [ast.dump(d) for d in old.decorator_list]:
        return "decorators differ from the original's"
    return None


def own_scope(func: ast.AST) -> Iterator[ast.AST]:
    """Nodes of ``func``'s body that belong to its own scope (not nested functions or classes)."""
    stack = list(ast.iter_child_nodes(func))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _SCOPES):
            stack.extend(ast.iter_child_nodes(node))


def is_generator(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in own_scope(func))


def declarations(func: ast.AST) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for node in ast.walk(func):
        if isinstance(node, ast.Global):
            found.update(("global", n) for n in node.names)
        elif isinstance(node, ast.Nonlocal):
            found.update(("nonlocal", n) for n in node.names)
    return found


def locally_bound(func: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Names bound by assignment or as parameters anywhere in ``func`` (imports excluded:
    a module is shared state, not a local object)."""
    bound = {a.arg for node in ast.walk(func) if isinstance(node, (*_FUNCTIONS, ast.Lambda))
             for a in all_args(node.args)}
    for node in ast.walk(func):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
    return bound - {name for kind, name in declarations(func)}


def root_of(node: ast.expr) -> ast.expr:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node


def stored_roots(func: ast.FunctionDef | ast.AsyncFunctionDef, local: set[str]) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(func):
        if isinstance(node, (ast.Attribute, ast.Subscript)) and \
                isinstance(node.ctx, (ast.Store, ast.Del)):
            root = root_of(node)
            if isinstance(root, ast.Name) and root.id not in local:
                roots.add(root.id)
    return roots
