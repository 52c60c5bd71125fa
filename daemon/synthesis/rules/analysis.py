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

The syntactic shapes the rules match live in :mod:`.shapes`, the facts their
preconditions are made of in :mod:`.preconditions`.
"""

from __future__ import annotations

import builtins
import functools
import keyword
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m
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

_LAZY = (cst.Lambda, cst.FunctionDef, cst.ClassDef)
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

    def assigned_values(self, name: str, pattern: m.Assign) -> set[int] | None:
        """Ids of the values ``name`` is bound to when every binding is a plain
        ``name = value`` statement matching ``pattern``; None when any binding is not."""
        values: set[int] = set()
        for store in self.stores(name):
            target = self.parent(store)
            assign = self.parent(target) if target is not None else None
            if not (isinstance(target, cst.AssignTarget) and isinstance(assign, cst.Assign)
                    and m.matches(assign, pattern)):
                return None
            values.add(id(assign.value))
        return values

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


@functools.lru_cache(maxsize=32)
def analyse_source(source: str) -> Function | None:
    """:meth:`Function.analyse` of ``source``, or None when it does not parse.

    Cached because the proposer runs every rule, several times when composing,
    over the same few sources, and the analysis dominates a rule's cost (a
    proposal for a demo function takes a fifth of the time). The result is
    immutable (frozen dataclass, LibCST nodes), so sharing it is safe; it weighs
    about half a megabyte per kilobyte of source, hence the small bound.
    """
    try:
        # CPython first: LibCST's native parser overflows its stack (and takes the
        # process with it) on nesting deeper than CPython accepts, so it only ever
        # sees source that CPython compiles.
        compile(source, "<rules>", "exec", dont_inherit=True)
        module = cst.parse_module(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError, cst.ParserSyntaxError):
        return None
    return Function.analyse(module)
