"""Errors of the invariants package, rooted in one class.

::

    InvariantsError
    ├── TargetError          a target cannot be resolved, read or recompiled
    ├── ProtocolError        a shadow job or its limits are malformed or out of range
    │                        (also a ValueError)
    └── InvariantLoadError   a declared predicate cannot be imported or is not callable

The checks themselves (replay, property checks, declared invariants, the
benchmark) do not raise for what a candidate does: they report it. These are
for a bad target, a bad job, a bad declaration. The tripwire's
``ForbiddenOperation`` stands apart on purpose: it is raised *inside* untrusted
code and must be a ``RuntimeError`` (see :mod:`invariants.tripwire`).
"""

from __future__ import annotations


class InvariantsError(Exception):
    """Base of every error the invariants package raises."""


class TargetError(InvariantsError):
    """A target cannot be resolved, read or recompiled; the message says why."""


class ProtocolError(InvariantsError, ValueError):
    """A shadow job or its limits are malformed or out of range; the message names the field."""


class InvariantLoadError(InvariantsError):
    """A declared predicate cannot be imported or is not callable; the message says which."""
