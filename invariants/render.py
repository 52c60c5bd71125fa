"""Bounded, Python-like renderings of values for evidence, without running their code.

A mismatch is reported with the input, the expected and the actual outcome; these
texts go to the audit log and back to the proposer, so they must be short and
must not run a ``__repr__`` that a candidate's result could carry. Containers
are read through the builtin types' own methods, other objects through
:func:`invariants.canonical.describe_node`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from invariants.canonical import ATOMS, Uncomparable, describe_node, type_name

MAX_NESTING = 12


class _Full(Exception):
    """The character budget is spent."""


class _Writer:
    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.left = limit

    def emit(self, text: str) -> None:
        self.parts.append(text)
        self.left -= len(text)
        if self.left <= 0:
            raise _Full


def safe_repr(value: object, limit: int = 300) -> str:
    """At most ``limit`` characters showing ``value``; "…" marks a cut."""
    writer = _Writer(limit + 1)
    try:
        _render(value, writer, 0)
    except (_Full, RecursionError, Uncomparable):
        writer.parts.append("…")
    text = "".join(writer.parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def call_repr(args: tuple[Any, ...], kwargs: dict[str, Any], limit: int = 300) -> str:
    """The arguments of a call as they would be written: ``([3, 1], key=None)``."""
    writer = _Writer(limit + 1)
    try:
        writer.emit("(")
        for i, arg in enumerate(args):
            writer.emit(", " if i else "")
            _render(arg, writer, 1)
        for i, (key, arg) in enumerate(kwargs.items()):
            writer.emit(", " if i or args else "")
            writer.emit(f"{key}=" if type(key) is str else "?=")
            _render(arg, writer, 1)
        writer.emit(")")
    except (_Full, RecursionError, Uncomparable):
        writer.parts.append("…")
    text = "".join(writer.parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _render(value: object, out: _Writer, depth: int) -> None:
    tp = type(value)
    if tp in ATOMS or tp in (float, complex):
        out.emit(_atom(value, tp, out.left))
        return
    if depth > MAX_NESTING:
        out.emit("…")
        return
    name = type_name(tp)
    if tp in (list, tuple):
        items: Any = list.__iter__(value) if tp is list else tuple.__iter__(value)  # type: ignore[arg-type]
        opener, closer = ("[", "]") if tp is list else ("(", ")")
        size = len(value)  # type: ignore[arg-type]
        _items(items, opener, "," + closer if size == 1 and tp is tuple else closer, out, depth)
        return
    if tp is dict:
        mapping: dict[Any, Any] = value  # type: ignore[assignment]
        out.emit("{")
        for i, (key, item) in enumerate(dict.items(mapping)):
            out.emit(", " if i else "")
            _render(key, out, depth + 1)
            out.emit(": ")
            _render(item, out, depth + 1)
        out.emit("}")
        return
    if tp in (set, frozenset):
        members: Any = value
        iterate = set.__iter__(members) if tp is set else frozenset.__iter__(members)
        if not len(members):
            out.emit(f"{name}()")
            return
        _items(iterate, "{" if tp is set else "frozenset({", "}" if tp is set else "})", out,
               depth)
        return
    children: list[object] = []
    head = describe_node(value, tp, children)
    if head[0] == "exception":
        _items(iter(children), f"{head[1]}(", ")", out, depth)
    elif len(head) > 2 and head[1] == "object" and "attrs" in head:
        count = head[head.index("attrs") + 1]
        out.emit(f"{head[0]}(")
        for i in range(count):
            key, item = children[2 * i], children[2 * i + 1]
            out.emit((", " if i else "") + (f"{key}=" if type(key) is str else "?="))
            _render(item, out, depth + 1)
        out.emit(")")
    elif len(head) > 2 and head[1] in ("seq", "deque", "map"):
        out.emit(f"{head[0]}(")
        _render_like_builtin(head, children, out, depth)
        out.emit(")")
    elif len(head) > 2 and head[1] in ("str", "num", "bytes"):
        out.emit(f"{head[0]}({_atom(head[2], type(head[2]), out.left)})")
    else:
        out.emit("<" + " ".join(str(piece)[:120] for piece in head
                               if piece != "" and type(piece) is not tuple) + ">")


def _render_like_builtin(head: tuple[Any, ...], children: list[object], out: _Writer,
                         depth: int) -> None:
    if head[1] == "map":
        out.emit("{")
        for i in range(head[2]):
            out.emit(", " if i else "")
            _render(children[2 * i], out, depth + 1)
            out.emit(": ")
            _render(children[2 * i + 1], out, depth + 1)
        out.emit("}")
        return
    _items(iter(children[: head[2]]), "[", "]", out, depth)


def _items(items: Iterable[object], opener: str, closer: str, out: _Writer, depth: int) -> None:
    out.emit(opener)
    for i, item in enumerate(itertools.islice(items, out.left)):
        out.emit(", " if i else "")
        _render(item, out, depth + 1)
    out.emit(closer)


def _atom(value: Any, tp: type, room: int) -> str:
    if tp is int and value.bit_length() > 256:
        return f"<int of {value.bit_length()} bits>"
    if tp in (str, bytes):
        return repr(value[: max(room, 1)])
    return repr(value)
