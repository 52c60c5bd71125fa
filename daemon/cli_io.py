"""What every ``selfmod`` command shares: its configuration, its state directory, its output.

Every command prints either text for people or, with ``--json``, one JSON
document; errors are one line (``selfmod: error: ...``) or ``{"error": ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from daemon.config import DaemonConfig, load_config
from daemon.errors import ConfigError

Command = Callable[[argparse.Namespace], int]


def fail(args: argparse.Namespace, message: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"error": message}))
    else:
        print(f"selfmod: error: {message}", file=sys.stderr)


def emit(args: argparse.Namespace, data: Any, text: Callable[[Any], str]) -> None:
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        print(text(data))


STATE_DIR_ENV = "SELFMOD_STATE_DIR"


def config_of(args: argparse.Namespace) -> DaemonConfig:
    config = load_config(Path(args.config) if getattr(args, "config", None) else None)
    state_dir = getattr(args, "state_dir", None) or os.environ.get(STATE_DIR_ENV)
    if state_dir:
        config = config.with_overrides(state_dir=state_dir)
    return config


def state_dir_of(args: argparse.Namespace) -> Path:
    """The state directory a reading command works on; a ConfigError when there is none.

    A missing directory is not an empty history: every command that reads one
    refuses the same way, saying where it looked and how to point it elsewhere.
    """
    state_dir = config_of(args).state_dir
    if not state_dir.is_dir():
        raise ConfigError(
            f"no state directory at {state_dir.resolve()}: pass --state-dir DIR, set "
            f"{STATE_DIR_ENV}, or run from the directory the daemon ran in (the unit's is "
            "/var/lib/selfmod)")
    return state_dir


def utc(timestamp: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M")


def table(rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()) -> str:
    """Rows as columns sized to their widest cell, so nothing misaligns whatever the values."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.rjust(w) if i in right else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
