"""Inputs found for a target by the shadow's search or symbolic diff, kept for its next candidates.

A found input is one the recorded calls did not have: it gave a candidate a
different outcome from the original's, or ran candidate code nothing else ran.
Later candidates of the same target are run on every kept input first, so a
fault found once rejects the next candidate that carries it at once.

The shadow is untrusted, so what it sends back is text: a Python literal of
``(args, kwargs)``, never a pickle. The daemon checks each with
:func:`ast.literal_eval` (bounded in size) before keeping it, and the shadow
reads them the same way. The file is
``corpus/<module>/<qualname>/found.json``, written atomically; the newest
:data:`MAX_INPUTS` are kept.
"""

from __future__ import annotations

import ast
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from snapshots.errors import CorpusError

__all__ = ["FOUND_FORMAT", "FoundError", "add_found", "found_path", "read_found"]

# History of FOUND_FORMAT:
#   1 — {format, target, inputs: [literal text]}.
FOUND_FORMAT = 1
MAX_INPUTS = 200
MAX_INPUT_CHARS = 4_000
MAX_FILE_BYTES = 4 << 20


class FoundError(CorpusError):
    """The found-inputs file cannot be read or is not in the known format."""


def found_path(root: Path, target: str) -> Path:
    """``corpus/<module>/<qualname>/found.json`` below the state directory."""
    module, _, qualname = target.partition(":")
    return root / module / qualname / "found.json"


def read_found(path: Path) -> list[str]:
    """The kept inputs' literals; [] when there is no file yet."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise FoundError(f"cannot read found inputs {path}: {exc}") from exc
    if len(data) > MAX_FILE_BYTES:
        raise FoundError(f"found inputs {path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise FoundError(f"found inputs {path} is not JSON: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FOUND_FORMAT or \
            not isinstance(payload.get("inputs"), list):
        raise FoundError(f"found inputs {path} has an unknown format")
    return [text for text in payload["inputs"] if _valid(text)]


def add_found(path: Path, target: str, texts: Iterable[str]) -> int:
    """Keep the valid, new ones of ``texts``; returns how many were added."""
    try:
        kept = read_found(path)
    except FoundError:
        kept = []  # a damaged file is replaced: these inputs are a help, not a record
    new = [text for text in dict.fromkeys(texts) if _valid(text) and text not in kept]
    if not new:
        return 0
    inputs = (kept + new)[-MAX_INPUTS:]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".corpus-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"format": FOUND_FORMAT, "target": target, "inputs": inputs}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(new)


def _valid(text: object) -> bool:
    """A literal of ``(args_tuple, kwargs_dict)`` of bounded size."""
    if type(text) is not str or len(text) > MAX_INPUT_CHARS:
        return False
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return type(value) is tuple and len(value) == 2 and type(value[0]) is tuple and \
        type(value[1]) is dict
