"""The rules proposer: every applicable rewrite of the catalogue, alone and composed."""

from __future__ import annotations

import ast
import builtins
import time
from collections.abc import Callable, Sequence

import libcst as cst

from daemon.synthesis.base import Candidate, ProposalRequest
from daemon.synthesis.rules.analysis import CONSUMERS, analyse_source
from daemon.synthesis.rules.catalogue import CATALOGUE
from daemon.synthesis.rules.rule import Rule
from invariants.targets import sha256_text

ErrorHook = Callable[[str, BaseException], None]

_BUILTINS = frozenset(dir(builtins))
# Composition re-runs the catalogue until nothing changes; this bounds the passes.
MAX_PASSES = 4


class RulesProposer:
    """Proposes one candidate per applicable rule and, when two or more rules apply in
    sequence, one with all of them composed (first in the list: it is usually the
    fastest). Composition re-runs the catalogue until nothing changes, so the
    composed source is a fixed point: proposing again from it yields nothing.

    Rules whose rewrite imports a module are used only when the request's
    ``allowed_imports`` lists it. A candidate that would call a builtin the
    module rebinds (``from numpy import *`` rebinding ``sum``, a module-level
    ``def max``) is dropped. Nothing here raises: a rule that fails is skipped and
    reported to ``on_error``, if given. Each candidate's ``cost["seconds"]`` is the
    time its own rewrite took (the composition's, for the composed one).
    """

    name = "rules"
    # the catalogue is deterministic: feedback on a rejected rewrite cannot change it
    self_correcting = False

    def __init__(self, rules: Sequence[Rule] = CATALOGUE, *,
                 on_error: ErrorHook | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.rules = tuple(rules)
        self.on_error = on_error
        self.clock = clock

    def propose(self, request: ProposalRequest) -> list[Candidate]:
        try:
            return self._propose(request)
        except Exception as exc:  # odd input (a recursion limit, say) means no proposal
            if self.on_error is not None:
                self.on_error("proposer", exc)
            return []

    def _propose(self, request: ProposalRequest) -> list[Candidate]:
        fn = analyse_source(request.source)
        if fn is None:
            return []
        module = fn.module
        allowed = set(request.allowed_imports)
        rules = [r for r in self.rules
                 if all(imp.partition(".")[0] in allowed for imp in r.imports)]
        rebound = _module_bindings(request.module_source)
        if _consumers_rebound(request.source, rebound):
            return []
        found: list[tuple[list[Rule], str, float]] = []
        for rule in rules:
            started = self.clock()
            rewritten = self._apply(rule, module, request.source, rebound)
            if rewritten is not None:
                found.append(([rule], rewritten.code, self.clock() - started))
        if found:
            # a rewrite can expose idioms no rule saw in the original, so compose even
            # when only one rule applied at first
            started = self.clock()
            applied, source = self._compose(rules, module, request.source, rebound)
            if len(applied) >= 2:
                found.insert(0, (applied, source, self.clock() - started))
        parent = sha256_text(request.source)
        candidates: list[Candidate] = []
        seen = {request.source}
        for applied, source, seconds in found:
            if source in seen:
                continue
            seen.add(source)
            candidates.append(Candidate(
                target=request.target, source=source,
                origin="rules:" + "+".join(rule.id for rule in applied), parent=parent,
                rationale="; ".join(rule.summary for rule in applied),
                cost={"seconds": seconds}, keeps_original=True))
        return candidates

    def _compose(self, rules: Sequence[Rule], module: cst.Module, original: str,
                 rebound: frozenset[str] | None) -> tuple[list[Rule], str]:
        applied: list[Rule] = []
        current = module
        for _ in range(MAX_PASSES):
            changed = False
            for rule in rules:
                rewritten = self._apply(rule, current, original, rebound)
                if rewritten is None:
                    continue
                current, changed = rewritten, True
                if rule not in applied:
                    applied.append(rule)
            if not changed:
                break
        return applied, current.code

    def _apply(self, rule: Rule, module: cst.Module, original: str,
               rebound: frozenset[str] | None) -> cst.Module | None:
        """``rule``'s rewrite of ``module`` when it changed something and is usable."""
        try:
            rewritten = rule.apply(module)
            if rewritten is module or rewritten.code == module.code:
                return None
            if not _usable(rewritten.code, original, rebound):
                return None
            return rewritten
        except Exception as exc:  # a faulty rule costs its candidate, never the cycle
            if self.on_error is not None:
                self.on_error(rule.id, exc)
            return None


def _usable(source: str, original: str, rebound: frozenset[str] | None) -> bool:
    """Compiles, and calls no builtin that the module rebinds and the original did not use."""
    try:
        compile(source, "<candidate>", "exec", dont_inherit=True)
        introduced = _loaded(source) - _loaded(original)
    except (SyntaxError, ValueError):
        return False
    risky = introduced & _BUILTINS
    if not risky:
        return True
    return rebound is not None and not risky & rebound


def _consumers_rebound(source: str, rebound: frozenset[str] | None) -> bool:
    """Whether the function calls a name the analysis takes for a builtin that consumes a
    generator on the spot (``sum``, ``any``, ...) while the module may rebind it."""
    used = _loaded(source) & CONSUMERS
    return bool(used) and (rebound is None or bool(used & rebound))


def _loaded(source: str) -> set[str]:
    return {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}


def _module_bindings(module_source: str) -> frozenset[str] | None:
    """Names bound at module level, or None when that is unknowable (a star import)."""
    if not module_source:
        return frozenset()
    try:
        tree = ast.parse(module_source)
    except (SyntaxError, ValueError):
        return None
    names: set[str] = set()
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return None
                names.add(alias.asname or alias.name.partition(".")[0])
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        stack.extend(ast.iter_child_nodes(node))
    return frozenset(names)
