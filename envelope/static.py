"""The static gate: a deny-by-default check of a candidate's source before anything runs it.

A candidate is untrusted text. It passes only when it is exactly one function
definition with the original's name, parameters, defaults, decorators and kind
(plain, async, generator), imports nothing outside the policy's allowlist, and
uses none of the names, attributes and constructs that reach the interpreter's
machinery (``eval``, ``__class__``, frame objects, ``getattr`` with a computed
name, format strings that walk attributes, ...). Anything the rules do not
explicitly permit in those places is refused, and so is anything the gate
itself fails on.

This gate is not the only boundary and cannot be: Python offers too many ways
to reach a module from an object for a syntactic check to close them all. The
sandboxed shadow run is the boundary for what a candidate does while it is
judged; this gate keeps the obvious escapes and side channels out of the live
process, where an accepted candidate eventually runs, and gives proposers a
precise reason (rule id, line, column) to correct.

``check_candidate`` is a pure function and never raises. Rule ids are stable
(they appear in metrics and audit records):

``syntax``, ``original``, ``one-function``, ``signature``, ``import``,
``forbidden-name``, ``dunder``, ``introspection``, ``private``, ``global``, ``shared-state``,
``format-string``, ``size``, ``internal``.
"""

from __future__ import annotations

import ast
import math
import string
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from envelope.denylist import (
    FORBIDDEN_ATTRIBUTES,
    FORBIDDEN_BUILTINS,
    FORBIDDEN_MODULES,
)
from envelope.denylist import MODULES_STRIPPED as _MODULES_STRIPPED
from envelope.scopes import plain_locals
from envelope.shape import (
    all_args,
    declarations,
    locally_bound,
    root_of,
    signature_difference,
    stored_roots,
)
from invariants.verdict import Rejected, Stage

if TYPE_CHECKING:
    from envelope.policy import StaticPolicy

__all__ = ["Allowed", "Rejected", "check_candidate", "is_dunder"]

# Allowed as attribute names although they are forbidden builtins: ``re.compile``
# is the point of the ``re`` module and cannot reach the builtin.
_SAFE_ATTRIBUTES: Final = frozenset({"compile"})

# Read an attribute named by a string: allowed only as a direct call with constant,
# non-dunder names that would pass as attributes themselves.
_GETTERS: Final = frozenset({"getattr", "hasattr", "attrgetter", "methodcaller"})

# Methods that walk ``{0.attr[key]}`` fields of a format string.
_FORMAT_METHODS: Final = frozenset({"format", "format_map", "vformat", "get_field"})

# Frames, code objects, tracebacks, generators and coroutines lead to globals.
_INTROSPECTION_PREFIXES: Final = ("gi_", "cr_", "ag_", "f_", "tb_", "co_")

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)

# Ordering of violations found at the same position.
_PRIORITY: Final = ("import", "forbidden-name", "dunder", "introspection", "private",
                    "global", "shared-state", "format-string")


@dataclass(frozen=True)
class Allowed:
    """The candidate passed every rule; sizes are AST node counts."""

    nodes: int
    original_nodes: int


def _rejected(rule: str, reason: str, line: int = 1, col: int = 1) -> Rejected:
    """The gate's verdict that the candidate broke ``rule`` at ``line``:``col``."""
    return Rejected(Stage.STATIC, rule, reason, line, col)


def check_candidate(candidate_source: str, original_source: str,
                    policy: StaticPolicy) -> Allowed | Rejected:
    """Judge ``candidate_source`` as a replacement for ``original_source``; never raises."""
    try:
        return _Gate(candidate_source, original_source, policy).check()
    except Exception as exc:  # deny by default: a failure of the gate is a rejection
        return _rejected("internal", f"the gate could not judge this candidate "
                        f"({type(exc).__name__}: {exc}); rejected by default")


def is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _format_fields(fmt: str) -> Iterator[str]:
    """Field names of a format string, nested specs included; raises ValueError if malformed."""
    for _literal, field, spec, _conversion in string.Formatter().parse(fmt):
        if field is not None:
            yield field
        if spec and "{" in spec:
            yield from _format_fields(spec)


class _Gate:
    def __init__(self, candidate: str, original: str, policy: StaticPolicy) -> None:
        self.candidate = candidate
        self.original = original
        self.policy = policy
        self.extra_names = frozenset(policy.forbidden_names)
        self.lines = candidate.splitlines()
        # filled in by _scan, read by the per-node checks
        self.params: set[str] = set()  # the function's own parameters (same as the original's)
        self.plain_locals: frozenset[str] = frozenset()  # names that are local wherever used
        self.local: set[str] = set()  # names the candidate binds itself
        self.vetted: set[int] = set()  # ids of getattr & co. whose call was checked
        self.orig_declared: set[tuple[str, str]] = set()  # the original's global/nonlocal
        self.orig_stored: set[str] = set()  # non-local names the original stores into

    def check(self) -> Allowed | Rejected:
        limit = max(20_000, math.ceil(len(self.original) * self.policy.max_growth * 4))
        if len(self.candidate) > limit:
            return _rejected("size", f"the candidate is {len(self.candidate)} characters, "
                            f"more than the {limit} this original allows")
        try:
            original = ast.parse(self.original)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            return _rejected("original", f"the original does not parse ({exc})")
        if len(original.body) != 1 or not isinstance(original.body[0], _FUNCTIONS):
            return _rejected("original", "the original is not one function definition")
        parsed = self._parse()
        if isinstance(parsed, Rejected):
            return parsed
        tree = parsed
        body = tree.body
        if len(body) != 1 or not isinstance(body[0], _FUNCTIONS):
            extra = next((s for s in body if not isinstance(s, _FUNCTIONS)), None)
            if not body:
                return _rejected("one-function", "the candidate defines no function")
            node = extra if extra is not None else body[1]
            what = "a second function" if extra is None else f"a top-level {type(node).__name__}"
            return self._reject("one-function", node, f"{what}; the candidate must be exactly "
                                "one function definition and nothing else")
        func, orig = body[0], original.body[0]
        assert isinstance(orig, _FUNCTIONS)
        problem = signature_difference(func, orig)
        if problem is not None:
            return self._reject("signature", func, problem + "; keep the original's signature")
        found = sorted(self._scan(func, orig),
                       key=lambda v: (v[1], v[2], _PRIORITY.index(v[0])))
        if found:
            rule, line, col, reason = found[0]
            return _rejected(rule, reason, line, col)
        nodes = sum(1 for _ in ast.walk(tree))
        original_nodes = sum(1 for _ in ast.walk(original))
        if nodes > self.policy.max_growth * original_nodes:
            return self._reject(
                "size", func, f"{nodes} AST nodes, more than {self.policy.max_growth:g} x the "
                f"original's {original_nodes}")
        return Allowed(nodes, original_nodes)

    def _parse(self) -> ast.Module | Rejected:
        try:
            # The compiler's warnings (invalid escapes, `is` with a literal) would go to the
            # daemon's stderr for every candidate; they are not the gate's business.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(self.candidate, filename="<candidate>")
                compile(tree, "<candidate>", "exec", dont_inherit=True)  # scoping errors
        except SyntaxError as exc:
            line, col = exc.lineno or 1, exc.offset or 1
            return _rejected("syntax", exc.msg, line, col)
        except (ValueError, RecursionError, MemoryError) as exc:
            return _rejected("syntax", f"{type(exc).__name__}: {exc}")
        return tree

    def _position(self, node: ast.AST) -> tuple[int, int]:
        line = getattr(node, "lineno", 1)
        offset = getattr(node, "col_offset", 0)
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        # ast columns count UTF-8 bytes; people count characters
        col = len(text.encode("utf-8")[:offset].decode("utf-8", errors="replace")) + 1
        return line, col

    def _reject(self, rule: str, node: ast.AST, reason: str) -> Rejected:
        line, col = self._position(node)
        return _rejected(rule, reason, line, col)

    # -- the walk ---------------------------------------------------------------------------

    def _scan(self, func: ast.FunctionDef | ast.AsyncFunctionDef,
              orig: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[tuple[str, int, int, str]]:
        # Decorators and defaults equal the original's (checked above) and are never run
        # from the candidate, so they are not held against it.
        top_args = all_args(func.args)
        skip = {id(n) for n in [*func.decorator_list, *func.args.defaults, *top_args,
                                *(d for d in func.args.kw_defaults if d is not None)]}
        self.params = {a.arg for a in top_args}
        self.plain_locals = plain_locals(self.candidate)
        self.local = locally_bound(func)
        self.orig_declared = declarations(orig)
        self.orig_stored = stored_roots(orig, locally_bound(orig))
        stack: list[ast.AST] = [func]
        for arg in top_args:  # the names equal the original's; annotations still count
            if arg.annotation is not None:
                stack.append(arg.annotation)
        while stack:
            node = stack.pop()
            if id(node) in skip:
                continue
            for rule, at, reason in self._node_violations(node):
                line, col = self._position(at)
                yield rule, line, col, reason
            stack.extend(reversed(list(ast.iter_child_nodes(node))))

    def _node_violations(self, node: ast.AST) -> Iterator[tuple[str, ast.AST, str]]:
        params = self.params
        match node:
            case ast.Import(names=aliases):
                for alias in aliases:
                    yield from self._module_import(alias.name, node)
                    if alias.asname:
                        yield from self._name(alias.asname, node, params)
                    else:
                        yield from self._name(alias.name.partition(".")[0], node, params)
            case ast.ImportFrom(module=module, names=aliases, level=level):
                if level:
                    yield "import", node, "relative imports are not allowed"
                else:
                    yield from self._module_import(module or "", node)
                for alias in aliases:
                    yield from self._attribute(alias.name, node, None)
                    if alias.name in _GETTERS and alias.asname not in (None, alias.name):
                        yield "forbidden-name", node, f"{alias.name} may not be renamed"
                    if alias.asname:
                        yield from self._name(alias.asname, node, params)
            case ast.Name(id=name):
                if id(node) in self.vetted:
                    return
                yield from self._name(name, node, params)
                if name in _GETTERS:
                    yield "forbidden-name", node, (f"{name} is allowed only when called directly "
                                                   "with constant attribute names")
            case ast.Attribute(value=receiver, attr=attr):
                yield from self._attribute(attr, node, receiver)
                if attr in _GETTERS and id(node) not in self.vetted:
                    yield "forbidden-name", node, (f"{attr} is allowed only when called directly "
                                                   "with constant attribute names")
                if isinstance(node.ctx, (ast.Store, ast.Del)):
                    yield from self._store(node)
            case ast.Subscript(ctx=ast.Store() | ast.Del()):
                yield from self._store(node)
            case ast.Call(func=ast.Name(id=getter) | ast.Attribute(attr=getter)) \
                    if getter in _GETTERS:
                self.vetted.add(id(node.func))  # its own verdict stands for the name
                yield from list(self._getter_call(getter, node))[:1]
            case ast.FunctionDef(name=name) | ast.AsyncFunctionDef(name=name) | \
                    ast.ClassDef(name=name):
                yield from self._name(name, node, params)
            case ast.arg(arg=name):
                yield from self._name(name, node, set())
            case ast.keyword(arg=str(name)) if is_dunder(name):
                yield "dunder", node, f"dunder keyword {name!r} is not allowed"
            case ast.ExceptHandler(name=str(name)) | \
                    ast.MatchAs(name=str(name)) | ast.MatchStar(name=str(name)) | \
                    ast.MatchMapping(rest=str(name)):
                yield from self._name(name, node, params)
            case ast.Constant(value=str(text)) if is_dunder(text):
                # names handed to setattr-like helpers: update_wrapper(assigned=...),
                # type(name, bases, {"__eq__": ...}), namespace["__builtins__"]
                yield "dunder", node, f"string {text!r} names a dunder attribute"
            case ast.MatchClass(kwd_attrs=attrs):
                for attr in attrs:
                    yield from self._attribute(attr, node, None)
            case ast.Global(names=names) | ast.Nonlocal(names=names):
                kind = "global" if isinstance(node, ast.Global) else "nonlocal"
                for name in names:
                    yield from self._name(name, node, params)
                    if (kind, name) not in self.orig_declared:
                        yield "global", node, (f"`{kind} {name}` rebinds a name outside the "
                                               "function, which the original does not")
        return

    # -- the checks ----------------------------------------------------------------------------

    def _module_import(self, module: str, node: ast.AST) -> Iterator[tuple[str, ast.AST, str]]:
        top = module.partition(".")[0]
        if top not in self.policy.allowed_imports:
            allowed = ", ".join(sorted(self.policy.allowed_imports)) or "none"
            yield "import", node, f"import of {module!r} is not allowed (allowed: {allowed})"
        for part in module.split("."):
            if part in FORBIDDEN_MODULES or part.lstrip("_") in _MODULES_STRIPPED:
                yield "forbidden-name", node, f"module {part!r} is forbidden"

    def _name(self, name: str, node: ast.AST,
              params: set[str]) -> Iterator[tuple[str, ast.AST, str]]:
        # A parameter of the function shadows a global or builtin throughout its body, and
        # rebinding it to something dangerous needs a route the other checks close. So does
        # a local variable, provided every mention of the name is one (envelope.scopes).
        if (name in params or name in self.plain_locals) and not is_dunder(name):
            return
        if name in FORBIDDEN_MODULES or name in FORBIDDEN_BUILTINS or name in self.extra_names:
            yield "forbidden-name", node, f"{name!r} is a forbidden name"
        elif is_dunder(name):
            yield "dunder", node, f"dunder name {name!r} is not allowed"

    def _attribute(self, attr: str, node: ast.AST,
                   receiver: ast.expr | None) -> Iterator[tuple[str, ast.AST, str]]:
        """Checks of an attribute read or written on ``receiver`` (None: not known)."""
        if (attr in FORBIDDEN_MODULES or attr.lstrip("_") in _MODULES_STRIPPED
                or attr in FORBIDDEN_ATTRIBUTES or attr in self.extra_names
                or (attr in FORBIDDEN_BUILTINS and attr not in _SAFE_ATTRIBUTES)):
            yield "forbidden-name", node, f"attribute {attr!r} is forbidden"
        elif is_dunder(attr):
            yield "dunder", node, f"dunder attribute {attr!r} is not allowed"
        elif attr.startswith(_INTROSPECTION_PREFIXES):
            yield "introspection", node, (f"attribute {attr!r} looks like frame, code or "
                                          "generator introspection")
        elif attr.startswith("_") and not self._is_local(receiver):
            # a module's private helpers include exec-based code generators and setattr
            # wrappers (dataclasses._create_fn); the function's own objects are fine
            yield "private", node, (f"private attribute {attr!r} of an object that is not "
                                    "local to the function")
        elif attr in _FORMAT_METHODS:
            problem = _format_problem(receiver)
            if problem is not None:
                yield "format-string", node, f".{attr}() {problem}"

    def _is_local(self, expr: ast.expr | None) -> bool:
        root = root_of(expr) if expr is not None else None
        return isinstance(root, ast.Name) and root.id in self.local

    def _getter_call(self, getter: str, call: ast.Call) -> Iterator[tuple[str, ast.AST, str]]:
        """What is wrong with a call of getattr and friends; nothing when it is allowed."""
        args = call.args
        if call.keywords or any(isinstance(a, ast.Starred) for a in args):
            yield "forbidden-name", call, f"{getter} with unpacked or keyword arguments"
            return
        low, high = {"getattr": (2, 3), "hasattr": (2, 2)}.get(getter, (1, len(args)))
        if not low <= len(args) <= high:
            yield "forbidden-name", call, f"{getter} with {len(args)} arguments"
            return
        receiver: ast.expr | None
        if getter in ("getattr", "hasattr"):
            receiver, name_args = args[0], args[1:2]
        else:  # the object comes later and cannot be vetted
            receiver = None
            name_args = args if getter == "attrgetter" else args[:1]
        for arg in name_args:
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                yield "forbidden-name", call, f"{getter} with a computed attribute name"
                return
            for part in arg.value.split(".") if getter == "attrgetter" else [arg.value]:
                for rule, _at, reason in self._attribute(part, call, receiver):
                    yield rule, call, f"{getter}({arg.value!r}): {reason}"

    def _store(self, target: ast.Attribute | ast.Subscript) -> Iterator[tuple[str, ast.AST, str]]:
        root = root_of(target)
        name = root.id if isinstance(root, ast.Name) else None
        if name is None:
            yield "shared-state", target, ("stores into an object that is not a local name; "
                                           "assign to a local first")
        elif name not in self.local and name not in self.orig_stored:
            yield "shared-state", target, (f"stores into {name!r}, which is not local to the "
                                           "function; the change would outlive the call")


def _format_problem(receiver: ast.expr | None) -> str | None:
    if not (isinstance(receiver, ast.Constant) and isinstance(receiver.value, str)):
        return "is only allowed on a string literal"
    try:
        fields = list(_format_fields(receiver.value))
    except ValueError as exc:
        return f"on a malformed format string ({exc})"
    for field in fields:
        if "." in field or "[" in field:
            return f"field {{{field}}} reads attributes or items of an argument"
    return None
