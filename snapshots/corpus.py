"""Recorded calls of one target: the corpus that candidates are replayed against.

A corpus belongs to one target *and* one base hash: calls recorded against one
version of a function's source say nothing certain about another. Arguments and
outcomes are stored as pickles because they are arbitrary Python objects; a
corpus file is written by the daemon into its own state directory (mode 0700)
and read by the daemon and by the shadow worker it spawns, never by anything
that a candidate controls. Results travel back from the shadow as JSON only.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snapshots.errors import CorpusError

__all__ = ["CORPUS_FORMAT", "CallRecord", "Corpus", "CorpusError", "corpus_path", "read_corpus",
           "remove_corpus_temps", "write_corpus"]

# History of CORPUS_FORMAT:
#   1 — first format: a pickled dict {format, target, base_sha, records: [dict]}.
CORPUS_FORMAT = 1
PICKLE_PROTOCOL = 5


@dataclass(frozen=True)
class CallRecord:
    """One live call: the arguments before it, and what it did.

    ``args_blob`` pickles ``(args, kwargs)`` as they were before the call;
    ``args_after_blob`` pickles them after, since mutating an input is behaviour.
    ``outcome`` is ``"return"`` (``result_blob`` holds the pickled value) or
    ``"raise"`` (``exc_type`` is the exception's qualified name, ``exc_message``
    its ``str()``).
    """

    args_blob: bytes
    outcome: str
    result_blob: bytes | None = None
    exc_type: str | None = None
    exc_message: str | None = None
    args_after_blob: bytes | None = None

    def load_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """A fresh copy of the arguments; every call gets its own."""
        args, kwargs = pickle.loads(self.args_blob)
        return tuple(args), dict(kwargs)

    @property
    def size(self) -> int:
        return len(self.args_blob) + len(self.result_blob or b"") + len(self.args_after_blob or b"")


@dataclass(frozen=True)
class Corpus:
    target: str
    base_sha: str
    records: tuple[CallRecord, ...]


def corpus_path(root: Path, target: str, base_sha: str) -> Path:
    """``corpus/<module>/<qualname>/<base_sha>.pkl`` below the state directory."""
    module, _, qualname = target.partition(":")
    return root / module / qualname / f"{base_sha}.pkl"


def write_corpus(path: Path, corpus: Corpus) -> None:
    """Write atomically (temp file, fsync, rename), so a crash leaves the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CORPUS_FORMAT,
        "target": corpus.target,
        "base_sha": corpus.base_sha,
        "records": [record.__dict__ for record in corpus.records],
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".corpus-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(payload, fh, protocol=PICKLE_PROTOCOL)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_corpus_temps(root: Path) -> list[Path]:
    """Delete temporary files a crashed :func:`write_corpus` left under ``root``.

    Only the owner of the state directory may call this: a live writer's
    temporary file would be deleted under it.
    """
    removed = []
    for leftover in root.rglob(".corpus-*.tmp"):
        leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed


def read_corpus(path: Path) -> Corpus:
    try:
        with open(path, "rb") as fh:
            payload = pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise CorpusError(f"cannot read corpus {path}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CORPUS_FORMAT:
        raise CorpusError(f"corpus {path} has unknown format "
                          f"{payload.get('format') if isinstance(payload, dict) else '?'}")
    records: Sequence[dict[str, Any]] = payload["records"]
    return Corpus(payload["target"], payload["base_sha"],
                  tuple(CallRecord(**record) for record in records))
