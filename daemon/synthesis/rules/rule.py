"""The base of every rewrite rule.

A rule is a pure function from a module holding one function definition to a
module: :meth:`Rule.apply` returns the very same object when nothing matched,
so callers can tell "no rewrite" from "a rewrite that printed the same". Rules
rewrite one site at a time and re-analyse the result, because every rewrite
moves nodes and invalidates the metadata the next precondition check needs.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import libcst as cst

from daemon.synthesis.rules.analysis import Function, analyse_source

# A bound on rewrites of one rule in one function; a backstop, not a tuning knob.
MAX_SITES = 32


class Rule(abc.ABC):
    """A rewrite of one slow idiom into an equivalent faster one.

    Subclasses set ``id`` (kebab-case, it ends up in ``Candidate.origin``),
    ``summary`` (one line, used as the candidate's rationale) and, when the
    rewritten code imports something inside the function, ``imports``; their
    docstring states the preconditions.
    """

    id: ClassVar[str]
    summary: ClassVar[str]
    imports: ClassVar[tuple[str, ...]] = ()

    def apply(self, module: cst.Module) -> cst.Module:
        """``module`` with every site rewritten; ``module`` itself when none matched."""
        source = module.code
        for _ in range(MAX_SITES):
            # analysing the printed source gives fresh nodes: a rewrite shares nodes
            # between trees, which metadata keyed by node identity must not see
            fn = analyse_source(source)
            rewritten = self.rewrite(fn) if fn is not None else None
            if rewritten is None:
                break
            source = rewritten.code
        if source == module.code:
            return module
        try:
            return cst.parse_module(source)
        except cst.ParserSyntaxError:
            return module

    @abc.abstractmethod
    def rewrite(self, fn: Function) -> cst.Module | None:
        """Rewrite the first site whose preconditions hold; None when there is none."""

    def __repr__(self) -> str:
        return f"<rule {self.id}>"


class ForLoopRule(Rule):
    """A rule whose sites are ``for`` statements: tries each loop until one rewrites.

    Subclasses implement :meth:`site` for one loop, and may narrow :meth:`applicable`
    (for example, to functions where a builtin the rewrite calls is not shadowed).
    """

    def applicable(self, fn: Function) -> bool:
        return True

    def rewrite(self, fn: Function) -> cst.Module | None:
        if not self.applicable(fn):
            return None
        for block, index, loop in fn.loops():
            if isinstance(loop, cst.For):
                result = self.site(fn, block, index, loop)
                if result is not None:
                    return result
        return None

    @abc.abstractmethod
    def site(self, fn: Function, block: cst.IndentedBlock, index: int,
             loop: cst.For) -> cst.Module | None:
        """Rewrite this loop, or None when its preconditions do not hold."""
