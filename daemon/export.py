"""Patches a maintainer can apply: each active version as a ``git apply``-able diff of its file.

A version's source is the function alone, dedented; upstreaming it needs the
file it came from and the line it starts on. The file is found on the import
path *without importing anything* (an export must not run the app's package
code), the original function is located in it by its exact lines at any one
indentation, and the diff is of the whole file: real paths relative to the
tree root (``--root``, else the file's git top level, else the working
directory) and real line numbers, so ``git apply`` and ``patch -p1`` take it.
Where the file has changed since the version was made (the original is no
longer in it), the patch is written against the function alone and says so.

``SUMMARY.md`` next to the patches lists each version with its speedup and
interval, the checks that proved it and the audit record of its activation.
"""

from __future__ import annotations

import difflib
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snapshots.audit import read_records
from snapshots.versions import VersionRecord, short_id


@dataclass(frozen=True)
class Exported:
    """One patch written: where, for which version, and whether it applies to a file."""

    path: Path
    version: str
    target: str
    file: Path | None  # None: the function's file was not found or has changed


def module_file(module: str, search: Iterable[Path]) -> Path | None:
    """The source file of ``module`` in the first of ``search`` that has it; nothing imported."""
    parts = module.split(".")
    for entry in search:
        base = entry.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def locate(file_lines: Sequence[str], function: str) -> tuple[int, int, str] | None:
    """Where the dedented ``function`` stands in ``file_lines``: (first, end, indentation)."""
    wanted = function.splitlines()
    while wanted and not wanted[-1].strip():
        wanted.pop()
    if not wanted:
        return None
    first = wanted[0]
    for start, line in enumerate(file_lines):
        text = line.rstrip("\r\n")
        if not text.endswith(first) or text[:len(text) - len(first)].strip():
            continue
        indent = text[:len(text) - len(first)]
        end = start + len(wanted)
        if end > len(file_lines):
            break
        if all(_same(file_lines[start + i], indent, want) for i, want in enumerate(wanted)):
            return start, end, indent
    return None


def _same(line: str, indent: str, wanted: str) -> bool:
    text = line.rstrip("\r\n")
    if not wanted.strip():
        return not text.strip()
    return text == indent + wanted


def file_patch(file_text: str, base: str, new: str, relative: str) -> str | None:
    """The whole-file diff replacing ``base`` with ``new`` in ``file_text``; None if not found."""
    lines = file_text.splitlines(True)
    found = locate(lines, base)
    if found is None:
        return None
    start, end, indent = found
    replacement = [indent + line if line.strip() else line
                   for line in new.rstrip("\n").splitlines(True)]
    replacement[-1] = replacement[-1].rstrip("\n") + "\n"
    after = lines[:start] + replacement + lines[end:]
    return "".join(difflib.unified_diff(lines, after, fromfile=f"a/{relative}",
                                        tofile=f"b/{relative}"))


def tree_root(file: Path) -> Path:
    """The git top level of ``file``'s directory, or the working directory outside git."""
    try:
        out = subprocess.run(["git", "-C", str(file.parent), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return Path.cwd()
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() \
        else Path.cwd()


def export_versions(records: Sequence[VersionRecord], source: Any, out: Path, *,
                    audit_log: Path, root: Path | None = None,
                    search: Sequence[Path] | None = None) -> list[Exported]:
    """Write one patch per record and ``SUMMARY.md`` into ``out``; ``source(sha)`` reads sources."""
    out.mkdir(parents=True, exist_ok=True)
    paths = list(search) if search is not None else \
        [Path.cwd(), *(Path(p) for p in sys.path if p)]
    if root is not None:
        paths.insert(0, root)
    activated = _activations(audit_log)
    written: list[Exported] = []
    for record in records:
        base, new = source(record.base_sha), source(record.id)
        module, _, qualname = record.target.partition(":")
        file = module_file(module, paths)
        patch, applies_to = None, None
        if file is not None:
            top = (root or tree_root(file)).resolve()
            try:
                relative = file.resolve().relative_to(top).as_posix()
            except ValueError:
                relative = file.name
            patch = file_patch(file.read_text(encoding="utf-8"), base, new, relative)
            applies_to = file if patch is not None else None
        if patch is None:
            where = f"{file} no longer holds the original" if file else "its file was not found"
            patch = (f"# not placed in a file: {where}; this diff is of the function alone\n"
                     + "".join(difflib.unified_diff(base.splitlines(True), new.splitlines(True),
                                                    fromfile=f"a/{record.target}",
                                                    tofile=f"b/{record.target}")))
        path = out / f"{module}.{qualname}.{short_id(record.id)}.patch"
        path.write_text(patch, encoding="utf-8")
        written.append(Exported(path, record.id, record.target, applies_to))
    (out / "SUMMARY.md").write_text(_summary(records, written, activated), encoding="utf-8")
    return written


def _activations(audit_log: Path) -> dict[str, int]:
    """The audit seq of each version's swap into the live process (the last one wins)."""
    seqs: dict[str, int] = {}
    for record in read_records(audit_log, kinds=("swapped", "restored", "approved")):
        version = record.body.get("version")
        if isinstance(version, str):
            seqs[version] = record.seq
    return seqs


def _summary(records: Sequence[VersionRecord], written: Sequence[Exported],
             activated: Mapping[str, int]) -> str:
    lines = ["# Versions exported by selfmod", "",
             "Apply with `git apply <patch>` (or `patch -p1 < <patch>`) at the tree root, then "
             "run your tests.", "",
             "| patch | target | speedup (interval) | checks | origin | audit seq |",
             "| --- | --- | --- | --- | --- | --- |"]
    for record, exported in zip(records, written, strict=True):
        evidence = record.evidence
        speedup = evidence.get("speedup")
        interval = (f"{speedup:.3g}x ({evidence.get('ci_low', 0):.3g}x to "
                    f"{evidence.get('ci_high', 0):.3g}x)") if isinstance(speedup, float | int) \
            else "n/a"
        checks = ", ".join(str(c) for c in evidence.get("checks", ())) or "n/a"
        placed = "" if exported.file is not None else " (function only)"
        lines.append(f"| {exported.path.name}{placed} | `{record.target}` | {interval} | "
                     f"{checks} | {record.origin} | {activated.get(record.id, 'n/a')} |")
    return "\n".join(lines) + "\n"
