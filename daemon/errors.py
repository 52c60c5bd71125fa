"""Errors of the daemon package.

::

    SelfmodError
    ├── ConfigError        bad selfmod.yaml or command line; says what to change
    ├── ControlError       the control socket cannot be reached or refused a request
    └── SwapError          a version cannot be installed into (or removed from) a live function

Stages of the synthesis cycle do not raise these for candidate failures: they
return ``Rejected`` values. These are for the daemon's own faults and operator input.
"""

from __future__ import annotations


class SelfmodError(Exception):
    """Root of the daemon's errors."""


class ConfigError(SelfmodError):
    """The daemon configuration or the command line is invalid."""


class ControlError(SelfmodError):
    """The control API could not be reached, or it refused the request."""


class SwapError(SelfmodError):
    """A version cannot be installed into, or removed from, a live function."""
