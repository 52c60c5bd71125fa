"""What the rules need to know about the one function they rewrite.

:class:`Function` wraps a module holding exactly one (synchronous) function
definition with LibCST's scope and parent metadata, and answers the questions
every precondition is built from: where a name is read and bound, whether a
node sits inside a loop, a ``try`` or a lazily run scope, which names are free
for new locals.

Names are treated conservatively. A name that a lambda, a nested ``def`` or
``class``, or a generator expression that is not consumed on the spot mentions
is *escaped*: such code may run at any later time, so no rule reasons about the
value of an escaped local. A function that can reach its own frame
(``locals()``, ``vars()``, ``eval``, frame attributes) is not analysed at all.
"""

from __future__ import annotations

import builtins
import functools
import keyword
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import libcst as cst
from libcst.metadata import (
    Assignment,
    CodeRange,
    FunctionScope,
    GlobalScope,
    MetadataWrapper,
    ParentNodeProvider,
    PositionProvider,
    Scope,
    ScopeProvider,
)

# Calls that can observe or rebind the calling frame's locals.
DYNAMIC_NAMES = frozenset({"locals", "vars", "eval", "exec", "dir", "globals", "breakpoint"})
DYNAMIC_ATTRIBUTES = frozenset({"f_locals", "f_back", "_getframe", "currentframe"})

# Builtins that exhaust an iterable argument before returning, so a generator
# expression passed to them runs on the spot.
CONSUMERS = frozenset({"sum", "any", "all", "min", "max", "sorted", "list", "tuple", "set",
                       "frozenset", "dict"})

# Builtins that only read a list passed to them and keep no way to change it.
READ_ONLY_BUILTINS = frozenset({"len", "sorted", "min", "max", "sum", "any", "all", "list",
                                "tuple", "set", "frozenset", "enumerate", "zip", "reversed",
                                "iter", "bool", "str", "repr"})

# Methods of list that never change the list.
READ_ONLY_LIST_METHODS = frozenset({"index", "count", "copy"})

_LAZY = (cst.Lambda, cst.FunctionDef, cst.ClassDef)
_LOOPS = (cst.For, cst.While)
_BUILTIN_NAMES = frozenset(dir(builtins))


@dataclass(frozen=True)
class Function:
    """One function definition with the metadata the rules consult."""

    module: cst.Module
    node: cst.FunctionDef
    scope: FunctionScope
    parents: Mapping[cst.CSTNode, cst.CSTNode]
    positions: Mapping[cst.CSTNode, CodeRange]
    scopes: frozenset[Scope]
    escaped: frozenset[str]  # names mentioned by code that may run later (see module doc)
    identifiers: frozenset[str]  # every identifier in the source, for picking fresh names
    bound: frozenset[str]  # names bound anywhere in the module, the function's own included

    @classmethod
    def analyse(cls, module: cst.Module) -> Function | None:
        """The analysis of ``module``, or None when it is not one plain function we can judge."""
        if len(module.body) != 1 or not isinstance(module.body[0], cst.FunctionDef):
            return None
        node = module.body[0]
        if node.asynchronous is not None:
            return None
        names = _Identifiers()
        module.visit(names)
        if names.values & DYNAMIC_NAMES or names.attributes & DYNAMIC_ATTRIBUTES:
            return None
        wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
        scope_map = wrapper.resolve(ScopeProvider)
        parents = wrapper.resolve(ParentNodeProvider)
        positions = wrapper.resolve(PositionProvider)
        scope = scope_map.get(node.body)
        if not isinstance(scope, FunctionScope):
            return None
        scopes = frozenset(s for s in scope_map.values() if s is not None)
        bound = frozenset(a.name for s in scopes for a in s.assignments)
        fn = cls(module, node, scope, parents, positions, scopes, frozenset(),
                 frozenset(names.values), bound)
        escaped = {name.value for name in names.nodes if fn.lazy(name)}
        escaped.update(names.declared)
        return cls(module, node, scope, parents, positions, scopes, frozenset(escaped),
                   frozenset(names.values | names.attributes), bound)

    # -- source ---------------------------------------------------------------------------

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)

    # -- structure ------------------------------------------------------------------------

    def parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self.parents.get(node)

    def ancestors(self, node: cst.CSTNode) -> Iterator[cst.CSTNode]:
        """Ancestors of ``node`` up to (excluding) the function definition itself."""
        current = self.parents.get(node)
        while current is not None and current is not self.node:
            yield current
            current = self.parents.get(current)

    def after(self, node: cst.CSTNode, other: cst.CSTNode) -> bool:
        """Whether ``node`` starts after ``other`` ends in the source text."""
        start, end = self.positions[node].start, self.positions[other].end
        return (start.line, start.column) >= (end.line, end.column)

    def within(self, node: cst.CSTNode, ancestor: cst.CSTNode) -> bool:
        return node is ancestor or any(a is ancestor for a in self.ancestors(node))

    def guarded(self, node: cst.CSTNode) -> bool:
        """Whether an exception raised at ``node`` could be caught inside the function.

        ``with`` counts: a context manager may swallow the exception.
        """
        return any(isinstance(a, (cst.Try, cst.TryStar, cst.With)) for a in self.ancestors(node))

    def lazy(self, node: cst.CSTNode) -> bool:
        """Whether ``node`` is inside code that may run after the statement holding it."""
        for ancestor in self.ancestors(node):
            if isinstance(ancestor, _LAZY):
                return True
            if isinstance(ancestor, cst.GeneratorExp) and not self._consumed(ancestor):
                return True
        return False

    def _consumed(self, gen: cst.GeneratorExp) -> bool:
        arg = self.parent(gen)
        call = self.parent(arg) if arg is not None else None
        if not (isinstance(arg, cst.Arg) and isinstance(call, cst.Call) and arg.star == ""
                and arg.keyword is None):
            return False
        func = call.func
        if isinstance(func, cst.Name):
            return func.value in CONSUMERS and func.value not in self.bound
        # "sep".join(genexp)
        return (isinstance(func, cst.Attribute) and func.attr.value == "join"
                and isinstance(func.value, cst.SimpleString))

    def blocks(self) -> Iterator[cst.IndentedBlock]:
        """Every statement block of the function's own scope, outermost first."""
        finder = _Blocks(self.node)
        self.node.visit(finder)
        yield from finder.found

    def loops(self) -> Iterator[tuple[cst.IndentedBlock, int, cst.For | cst.While]]:
        """Every synchronous loop statement of the function's own scope, with its position."""
        for block in self.blocks():
            for index, statement in enumerate(block.body):
                if isinstance(statement, cst.While) or (
                        isinstance(statement, cst.For) and statement.asynchronous is None):
                    yield block, index, statement

    # -- names ----------------------------------------------------------------------------

    def is_local(self, name: str) -> bool:
        """Bound in the function's own scope and never captured by code that runs later."""
        return name in self.scope.assignments and name not in self.escaped

    def stores(self, name: str) -> list[cst.CSTNode]:
        """Nodes that bind ``name`` in the function's scope (targets, parameters, imports)."""
        if name not in self.scope.assignments:
            return []
        return [a.node for a in self.scope.assignments[name] if isinstance(a, Assignment)]

    def reads(self, name: str) -> list[cst.CSTNode]:
        """Every read of the function-scope variable ``name`` (``del`` counts as a read).

        An augmented assignment's target is a store here, not a read: rules that allow
        ``x += ...`` look for it among the stores.
        """
        found: list[cst.CSTNode] = [access.node for access in self.scope.accesses[name]]
        for scope in self.scopes:
            if scope is self.scope or name in scope.assignments:
                continue
            if self._encloses(scope):
                found.extend(access.node for access in scope.accesses[name])
        return found

    def _encloses(self, scope: Scope) -> bool:
        while not isinstance(scope, GlobalScope):
            scope = scope.parent
            if scope is self.scope:
                return True
        return False

    def mentions(self, node: cst.CSTNode, name: str) -> bool:
        """Whether ``name`` appears anywhere under ``node`` as an identifier."""
        finder = _Identifiers()
        node.visit(finder)
        return name in finder.values

    def is_builtin(self, name: str) -> bool:
        """``name`` refers to the builtin: nothing in the function or module source binds it."""
        return name in _BUILTIN_NAMES and name not in self.bound

    def fresh(self, base: str, taken: Sequence[str] = ()) -> str:
        """A name not used anywhere in the function, derived from ``base``."""
        base = base if base.isidentifier() else "value"
        candidate, n = base, 1
        while (candidate in self.identifiers or candidate in taken or keyword.iskeyword(candidate)
               or candidate in _BUILTIN_NAMES):
            n += 1
            candidate = f"{base}_{n}"
        return candidate


class _Identifiers(cst.CSTVisitor):
    """Collects identifiers: variable-like names, attribute names, and names bound in
    ways the scope analysis misses (``global``, ``nonlocal``, match captures)."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: list[cst.Name] = []
        self.values: set[str] = set()
        self.attributes: set[str] = set()
        self.declared: set[str] = set()

    def visit_Name(self, node: cst.Name) -> None:
        self.nodes.append(node)
        self.values.add(node.value)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.attributes.add(node.attr.value)

    def visit_Global(self, node: cst.Global) -> None:
        self.declared.update(item.name.value for item in node.names)

    def visit_Nonlocal(self, node: cst.Nonlocal) -> None:
        self.declared.update(item.name.value for item in node.names)

    # LibCST's scope analysis does not see names bound by match patterns, so those
    # names are put beyond every rule's reasoning.
    def visit_MatchAs(self, node: cst.MatchAs) -> None:
        if node.name is not None:
            self.declared.add(node.name.value)

    def visit_MatchStar(self, node: cst.MatchStar) -> None:
        if node.name is not None:
            self.declared.add(node.name.value)

    def visit_MatchMapping(self, node: cst.MatchMapping) -> None:
        if node.rest is not None:
            self.declared.add(node.rest.value)


class _Blocks(cst.CSTVisitor):
    def __init__(self, top: cst.FunctionDef) -> None:
        super().__init__()
        self.top = top
        self.found: list[cst.IndentedBlock] = []

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return node is self.top

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False

    def visit_Lambda(self, node: cst.Lambda) -> bool:
        return False

    def visit_IndentedBlock(self, node: cst.IndentedBlock) -> None:
        self.found.append(node)


@functools.lru_cache(maxsize=128)
def analyse_source(source: str) -> Function | None:
    """:meth:`Function.analyse` of ``source``, or None when it does not parse.

    Cached because the proposer runs every rule, several times when composing,
    over the same few sources, and the analysis dominates a rule's cost. The
    result is immutable (frozen dataclass, LibCST nodes), so sharing it is safe.
    """
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError:
        return None
    return Function.analyse(module)


# -- shapes shared by several rules ---------------------------------------------------------


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


def is_name(node: cst.CSTNode | None, name: str | None = None) -> bool:
    return isinstance(node, cst.Name) and (name is None or node.value == name)


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
    if _truth_tested(fn, node):
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


def _truth_tested(fn: Function, node: cst.CSTNode) -> bool:
    """Whether only the truth of the value at ``node`` is used (``if x``, ``not x``, ...)."""
    parent = fn.parent(node)
    if isinstance(parent, cst.UnaryOperation) and isinstance(parent.operator, cst.Not):
        return True
    if isinstance(parent, (cst.If, cst.While, cst.IfExp, cst.Assert)) and parent.test is node:
        return True
    return isinstance(parent, cst.BooleanOperation) and _truth_tested(fn, parent)


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
