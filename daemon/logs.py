"""structlog set-up: JSON lines to stdout for journald, readable console output on a TTY.

Every log line carries ``event`` and a timestamp; events about a target also
carry ``target`` and ``version``: the event bus subscriber below adds them from
the domain event's fields, and :func:`log_context` adds them to every line
logged during a cycle (the version the cycle starts from, ``original`` when
none is active) where the event itself names no version.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any, TextIO

import structlog

from daemon import events as ev


def configure(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog for the process; ``fmt``: json, console, or auto (console on a TTY)."""
    out = stream if stream is not None else sys.stdout
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Any = (structlog.dev.ConsoleRenderer(colors=out.isatty()) if use_console
                     else structlog.processors.JSONRenderer(sort_keys=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def log_context(**fields: Any) -> contextlib.AbstractContextManager[Any]:
    """Add ``fields`` to every line logged in this context while the block runs.

    Fields an event sets itself win: a candidate's ``version`` is its own id.
    """
    return structlog.contextvars.bound_contextvars(**fields)


def get_logger(**context: Any) -> Any:
    return structlog.get_logger("selfmod").bind(**context)


class EventLogger:
    """Event-bus subscriber that logs every domain event with its fields."""

    _WARN = frozenset({"rejected", "rolled_back", "stale", "integrity_violation",
                       "oracle_mismatch", "policy_rejected"})

    def __init__(self, log: Any) -> None:
        self._log = log

    def __call__(self, event: ev.Event) -> None:
        body = event.body()
        method = self._log.warning if event.kind in self._WARN else self._log.info
        if event.kind in ("integrity_violation", "oracle_mismatch"):
            method = self._log.error
        if isinstance(event, ev.AppExited) and event.outcome != "stopped":
            # the workload is gone: nothing to profile or record until someone steps in
            method = self._log.error if event.failed else self._log.warning
        method(event.kind, **body)
