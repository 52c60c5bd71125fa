"""Which names in a candidate are plain local variables, resolved by the compiler's own scoping.

The static gate refuses names that reach dangerous modules and builtins
(``code``, ``types``, ``random``, ``eval`` ...). A *local variable* with such a
name reaches nothing: inside a function, a name bound anywhere in that scope
is local throughout it, and reading it before it is bound raises
UnboundLocalError instead of falling back to the module or the builtins. So a
candidate may call its own loop variable ``code`` or ``types``.

The resolution is :mod:`symtable`'s, the compiler's symbol tables, not a
re-implementation of Python's rules. A name is exempt only when every scope
of the candidate that mentions it is a function scope (a ``def``, lambda or
comprehension) where it is bound locally and not by an import, or is a free
variable closing over such a binding. One mention anywhere else (at module
level, in a class body, as an implicit global or builtin, after ``global``,
through an import) and the name is checked as usual everywhere.
"""

from __future__ import annotations

import symtable


def plain_locals(source: str) -> frozenset[str]:
    """Names that, wherever ``source`` mentions them, denote function-local variables.

    ``source`` is a candidate: one function definition at module level. The
    function's own name, bound once at module level and mentioned nowhere
    else, counts as local too (the definition binds it; nothing reads it).
    Source that does not compile has no exempt names.
    """
    try:
        module = symtable.symtable(source, "<candidate>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return frozenset()
    verdict: dict[str, bool] = {}
    for symbol in module.get_symbols():
        # the def's own name: assigned by the definition, never read at module level
        binds_only = symbol.is_assigned() and not symbol.is_referenced() and \
            not symbol.is_imported()
        verdict[symbol.get_name()] = binds_only and _defines_function(module, symbol.get_name())
    stack = list(module.get_children())
    while stack:
        table = stack.pop()
        stack.extend(table.get_children())
        function_scope = str(table.get_type()) in ("function", "SymbolTableType.FUNCTION")
        for symbol in table.get_symbols():
            name = symbol.get_name()
            local = function_scope and not symbol.is_imported() and \
                not symbol.is_global() and (symbol.is_local() or symbol.is_free())
            verdict[name] = verdict.get(name, True) and local
    return frozenset(name for name, ok in verdict.items() if ok)


def _defines_function(module: symtable.SymbolTable, name: str) -> bool:
    return any(child.get_name() == name and str(child.get_type()) in
               ("function", "SymbolTableType.FUNCTION") for child in module.get_children())
