"""Errors of the daemon package.

::

    SelfmodError
    ├── ConfigError        bad selfmod.yaml or command line; says what to change
    │   └── StartupError   ``selfmod run`` cannot start as configured (exit code 2)
    ├── ControlError       the control socket cannot be reached or refused a request
    └── SwapError          a version cannot be installed into (or removed from) a live function

Stages of the synthesis cycle do not raise these for candidate failures: they
return ``Rejected`` values. These are for the daemon's own faults and operator input.
"""

from __future__ import annotations

from typing import ClassVar


class SelfmodError(Exception):
    """Root of the daemon's errors."""

    exit_code: ClassVar[int] = 1  # what ``selfmod`` exits with when a command ends with it


class ConfigError(SelfmodError):
    """The daemon configuration or the command line is invalid."""


class StartupError(ConfigError):
    """A setting keeps the daemon from starting: the message names it and how to change it.

    Exit code 2, like a command-line usage error: nothing ran, so nothing is to
    be cleaned up or looked into but the setting.
    """

    exit_code = 2


class ControlError(SelfmodError):
    """The control API could not be reached, or it refused the request."""


class SwapError(SelfmodError):
    """A version cannot be installed into, or removed from, a live function."""
