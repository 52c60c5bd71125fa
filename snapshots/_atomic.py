"""Atomic file replacement, shared by the object store and state.json.

The sequence is the classic one: write a temporary file in the destination's
own directory (so the rename cannot cross file systems), fsync it, rename it
over the destination, then fsync the directory so the rename itself survives a
power loss. A crash at any step leaves the old file or the new one, plus at
worst a temporary file, which :func:`remove_temps` deletes at the next start.
Temporary files are named ``.<prefix>-*.tmp`` so they are easy to recognise.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import crash

TEMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
    """Make the directory entries below ``path`` (creations, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, prefix: str, crash_prefix: str) -> None:
    """Replace ``path`` with ``data`` so that readers see the old content or the new, never a mix.

    ``crash_prefix`` names this writer's crash points (``<crash_prefix>.tmp_written`` …).
    The temporary file is created with mode 0600 by ``mkstemp``.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{prefix}-", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            if crash.armed(f"{crash_prefix}.tmp_partial"):
                fh.write(data[: len(data) // 2])
                fh.flush()
                crash.crash_point(f"{crash_prefix}.tmp_partial")
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        crash.crash_point(f"{crash_prefix}.tmp_written")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    crash.crash_point(f"{crash_prefix}.renamed")
    fsync_dir(path.parent)


def remove_temps(directory: Path, prefix: str) -> list[Path]:
    """Delete temporary files a crashed writer left in ``directory``; return what was removed.

    Only the owner of the state directory may call this: a live writer's
    temporary file would be deleted under it.
    """
    removed = []
    for leftover in directory.glob(f".{prefix}-*{TEMP_SUFFIX}"):
        leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed
