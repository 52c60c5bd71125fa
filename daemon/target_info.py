"""What a cycle tells the proposers and the shadow about its target, besides the source.

The module around the function (for imports and helpers), the shapes of the
arguments it was recorded with, and the import roots a shadow process needs
to load the target the way the live process did.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

from snapshots.corpus import Corpus


def module_source(func: Any) -> str:
    """The source of the module ``func`` lives in, for context ("" when it has none)."""
    try:
        module = inspect.getmodule(func)
        return inspect.getsource(module) if module is not None else ""
    except (OSError, TypeError):
        return ""


def input_shapes(corpus: Corpus, limit: int = 3) -> tuple[str, ...]:
    """Short renderings of the first ``limit`` recorded calls' arguments: ``list[120](int)``."""
    shapes = []
    for record in corpus.records[:limit]:
        try:
            args, kwargs = record.load_args()
        except Exception:
            continue
        shapes.append(_shape((args, kwargs)))
    return tuple(shapes)


def _shape(value: Any, depth: int = 0) -> str:
    if depth > 2:
        return "…"
    if isinstance(value, (list, tuple, set, frozenset)):
        kind = type(value).__name__
        inner = _shape(next(iter(value)), depth + 1) if value else ""
        return f"{kind}[{len(value)}]({inner})"
    if isinstance(value, dict):
        if not value:
            return "dict[0]"
        key, val = next(iter(value.items()))
        return f"dict[{len(value)}]({_shape(key, depth + 1)}: {_shape(val, depth + 1)})"
    return type(value).__name__


def child_sys_path(target: str) -> tuple[str, ...]:
    """Import roots the shadow needs: the target module's root, then the daemon's own path."""
    module = sys.modules.get(target.partition(":")[0])
    roots: list[str] = []
    file = getattr(module, "__file__", None)
    if module is not None and file:
        depth = module.__name__.count(".") + (1 if file.endswith("__init__.py") else 0)
        roots.append(str(Path(file).resolve().parents[depth]))
    roots.extend(p for p in sys.path if p and Path(p).is_dir() and p not in roots)
    return tuple(roots)
