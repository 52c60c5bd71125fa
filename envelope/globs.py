"""Target globs: the one validator of ``module:qualname`` patterns.

The policy's globs (``scope.include``, ``approval.require_for``, ...) and
``selfmod run --scope`` are checked here, so an operator reads the same
message whichever way a glob came in. Matching is :func:`fnmatch.fnmatchcase`
over the whole ``module:qualname`` string (:func:`invariants.targets.in_scope`).
"""

from __future__ import annotations


def check_glob(value: str) -> str:
    """``value`` if it is a usable target glob (``module:qualname``, wildcards allowed).

    The one validator of scope globs: the policy's and ``selfmod run --scope``
    give the same messages. A ValueError says what is wrong and what to write.
    """
    if not value.strip() or value != value.strip() or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not a target glob; write module:qualname, "
                         "e.g. 'shop.pricing:*', without spaces")
    if ":" not in value and not any(c in value for c in "*?["):
        raise ValueError(f"{value!r} matches no target; targets are module:qualname, "
                         f"write '{value}:*' for every function of the module")
    module, sep, qualname = value.partition(":")
    if sep and (not module or not qualname or ":" in qualname):
        raise ValueError(f"{value!r} is not a target glob; write one module:qualname, "
                         "e.g. 'shop.pricing:*' or 'shop.pricing:Cart.total'")
    if _unclosed_bracket(value):
        raise ValueError(f"{value!r} has a '[' with no closing ']'; close the set, "
                         "e.g. 'shop.pricing:[a-c]*'")
    return value


def _unclosed_bracket(glob: str) -> bool:
    """Whether a ``[`` in ``glob`` opens no set (fnmatch would match it literally)."""
    i = 0
    while i < len(glob):
        if glob[i] == "[":
            j = i + 1
            if j < len(glob) and glob[j] == "!":
                j += 1
            if j < len(glob) and glob[j] == "]":
                j += 1  # a ']' first in a set is a member, not its end
            j = glob.find("]", j)
            if j < 0:
                return True
            i = j
        i += 1
    return False
