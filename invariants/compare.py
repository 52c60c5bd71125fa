"""Comparing two outcomes of a call: the original's and a candidate's.

Pure: values in, a :class:`Difference` (or None) out. What counts as behaviour:

- returned value or raised exception (type by qualified name, message by
  ``BaseException.__str__``, so a hostile ``__str__`` does not run);
- a returned generator or iterator, materialised up to a bound by the caller,
  including an exception raised part-way through it;
- the arguments after the call (mutating an input is behaviour);
- which parts of the result *are* parts of the arguments (aliasing);
- what the call printed to ``sys.stdout``.

Equality is :func:`invariants.canonical.same`: type-strict, structural, and
never calls a method of a returned object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from invariants.canonical import Uncomparable, fingerprint, same, type_name
from invariants.render import safe_repr

RETURN = "return"
RAISE = "raise"
ITERATOR = "iterator"


@dataclass(frozen=True)
class Outcome:
    """What one call did.

    ``kind`` is ``return``, ``raise`` or ``iterator`` (a returned generator or
    iterator, materialised into ``value`` as a tuple; ``exc_type`` then names what
    iterating it raised, if anything, and ``truncated`` says whether items were
    left over past the bound). ``None`` in ``args_after``, ``aliases`` or
    ``stdout`` means "not observed" (a recorded live call does not keep them)
    and is not compared.
    """

    kind: str
    value: Any = None
    exc_type: str | None = None
    exc_message: str | None = None
    truncated: bool = False
    args_after: Any = None
    aliases: tuple[tuple[str, str], ...] | None = None
    stdout: str | None = None


@dataclass(frozen=True)
class Difference:
    """How two outcomes differ; ``kind`` is a short label, the texts are bounded reprs."""

    kind: str  # outcome | exception | value | iterator | mutation | alias | output | uncomparable
    expected: str
    actual: str


def exception_name(exc_type: type) -> str:
    """The name an exception type is compared by: ``ValueError``, ``pkg.mod.MyError``."""
    return type_name(exc_type)


_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})
_exc_args = BaseException.__dict__["args"].__get__


def exception_message(exc: BaseException) -> str:
    """``str(exc)`` (what a recorder stores), computed without trusting a candidate's code.

    An exception class the candidate defined itself (a ``<locals>`` class) gets
    ``BaseException.__str__``; arguments that are not plain scalars are rendered
    by :func:`invariants.render.safe_repr` instead of their own ``__str__``.
    """
    tp = type(exc)
    args = _exc_args(exc)
    if not all(type(arg) in _PLAIN for arg in args):
        return safe_repr(args)
    own_class = "<locals>" in type_name(tp)
    text = BaseException.__str__(exc) if own_class else tp.__str__(exc)
    return text if type(text) is str else "<message>"


def compare_outcomes(expected: Outcome, actual: Outcome, *, repr_limit: int = 300
                     ) -> Difference | None:
    """The first way ``actual`` differs from ``expected``, or None when they match."""
    try:
        return _compare(expected, actual, repr_limit)
    except Uncomparable as exc:
        return Difference("uncomparable", str(exc), str(exc))


def _compare(expected: Outcome, actual: Outcome, limit: int) -> Difference | None:
    if expected.kind != actual.kind:
        return Difference("outcome", describe(expected, limit), describe(actual, limit))
    if expected.kind == RAISE and not _same_exception(expected, actual):
        return Difference("exception", describe(expected, limit), describe(actual, limit))
    if expected.kind == RETURN and not same(expected.value, actual.value):
        return Difference("value", safe_repr(expected.value, limit),
                          safe_repr(actual.value, limit))
    if expected.kind == ITERATOR and (
            not same(expected.value, actual.value) or expected.truncated != actual.truncated
            or not _same_exception(expected, actual)):
        return Difference("iterator", describe(expected, limit), describe(actual, limit))
    if expected.args_after is not None and actual.args_after is not None and \
            not same(expected.args_after, actual.args_after):
        return Difference("mutation", "arguments after the call: "
                          + safe_repr(expected.args_after, limit),
                          "arguments after the call: " + safe_repr(actual.args_after, limit))
    if expected.aliases is not None and actual.aliases is not None and \
            expected.aliases != actual.aliases:
        return Difference("alias", _aliases(expected.aliases), _aliases(actual.aliases))
    if expected.stdout is not None and actual.stdout is not None and \
            expected.stdout != actual.stdout:
        return Difference("output", "printed " + safe_repr(expected.stdout, limit),
                          "printed " + safe_repr(actual.stdout, limit))
    return None


def _same_exception(expected: Outcome, actual: Outcome) -> bool:
    return _bare(expected.exc_type) == _bare(actual.exc_type) and \
        expected.exc_message == actual.exc_message


def _bare(name: str | None) -> str | None:
    return name.removeprefix("builtins.") if name is not None else None


def _aliases(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return "result shares nothing with the arguments"
    return "; ".join(f"{result} is {argument}" for result, argument in pairs[:5])


def describe(outcome: Outcome, limit: int = 300) -> str:
    """A bounded one-line rendering of an outcome, for evidence."""
    if outcome.kind == RAISE:
        return f"raised {outcome.exc_type}: {safe_repr(outcome.exc_message, limit)}"
    if outcome.kind == ITERATOR:
        tail = f", then raised {outcome.exc_type}: {outcome.exc_message}" \
            if outcome.exc_type else ", then more" if outcome.truncated else ""
        return f"iterator yielding {safe_repr(outcome.value, limit)}{tail}"
    return f"returned {safe_repr(outcome.value, limit)}"


def outcome_fingerprint(outcome: Outcome) -> str:
    """A digest of everything compared about an outcome, stable across processes."""
    return fingerprint((outcome.kind, outcome.value, _bare(outcome.exc_type),
                        outcome.exc_message, outcome.truncated, outcome.args_after,
                        outcome.aliases, outcome.stdout))
