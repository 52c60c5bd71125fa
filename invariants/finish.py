"""The shadow's last step: write the report and leave, beyond the candidate's reach.

:func:`make_finisher` is called before any candidate exists. The function it
returns serialises the report itself (a strict JSON subset: dicts with string
keys, lists, strings, finite numbers, booleans, null) with every builtin and
helper bound at creation, writes it to the result pipe and ends the process with
``os._exit``. A candidate that rebinds ``json.dumps``, ``os.write`` or
``builtins.len`` changes nothing here; and a guard that saw such a rebinding
turns the report into ``forbidden`` (see :mod:`invariants.guard`).
"""

from __future__ import annotations

import json.encoder
import math
import os
from collections.abc import Callable
from typing import Any, NoReturn

from invariants.job import HASH_SEED_MAX
from invariants.report import MAX_MISMATCHES, MAX_TEXT, REPORT_FORMAT

Finisher = Callable[[str, Any, list[str]], NoReturn]

_FIELDS = ("status", "reason", "calls", "mismatches", "original_times", "candidate_times",
           "loops", "fingerprints", "checks", "examples", "notes", "coverage", "found", "phases")


def make_finisher(fd: int, limit: int, sightings: list[Any]) -> Finisher:
    """A function ``(nonce, fields, tampering) -> NoReturn`` that writes the report."""
    _type, _len, _str, _int, _float, _bool = type, len, str, int, float, bool
    _list, _dict, _none = list, dict, type(None)
    _escape = json.encoder.encode_basestring_ascii
    _float_repr, _int_repr, _isfinite = float.__repr__, int.__repr__, math.isfinite
    _join, _encode, _append = str.join, str.encode, list.append
    _write, _close, _exit = os.write, os.close, os._exit
    _fields, _format, _max_text, _max_mismatches = _FIELDS, REPORT_FORMAT, MAX_TEXT, MAX_MISMATCHES
    _memoryview, enumerate_ = memoryview, enumerate
    seed_text = os.environ.get("PYTHONHASHSEED", "")
    seed = int(seed_text) if seed_text.isdigit() else HASH_SEED_MAX

    def encode(value: Any, out: list[str], depth: int) -> bool:
        kind = _type(value)
        if depth > 6:
            return False
        if kind is _str:
            _append(out, _escape(value))
        elif kind is _bool:
            _append(out, "true" if value else "false")
        elif kind is _int:
            _append(out, _int_repr(value))
        elif kind is _float:
            if not _isfinite(value):
                return False
            _append(out, _float_repr(value))
        elif kind is _none:
            _append(out, "null")
        elif kind is _list:
            _append(out, "[")
            for index, item in enumerate_(value):
                if index:
                    _append(out, ",")
                if not encode(item, out, depth + 1):
                    return False
            _append(out, "]")
        elif kind is _dict:
            _append(out, "{")
            for index, (key, item) in enumerate_(_dict.items(value)):
                if _type(key) is not _str:
                    return False
                if index:
                    _append(out, ",")
                _append(out, _escape(key))
                _append(out, ":")
                if not encode(item, out, depth + 1):
                    return False
            _append(out, "}")
        else:
            return False
        return True

    def serialise(report: dict[str, Any]) -> bytes | None:
        out: list[str] = []
        if not encode(report, out, 0):
            return None
        data: bytes = _encode(_join("", out), "ascii")
        return data if _len(data) <= limit else None

    def finish(nonce: str, fields: Any, tampering: list[str]) -> NoReturn:
        report: dict[str, Any] = {
            "format": _format, "nonce": nonce if _type(nonce) is _str else "",
            "status": "error", "reason": "the shadow produced no result", "calls": 0,
            "mismatches": [], "original_times": [], "candidate_times": [], "loops": 0,
            "hash_seed": seed, "audit_events": [], "fingerprints": [],
            "checks": [], "examples": 0, "notes": [], "coverage": {}, "found": [],
            "phases": {},
        }
        if _type(fields) is _dict:
            for key in _fields:
                if key in fields:
                    report[key] = fields[key]
        if tampering:
            report["status"] = "forbidden"
            report["reason"] = ("the candidate rebinds what the shadow relies on: "
                                + _join(", ", [_str(name) for name in tampering[:5]]))
            report["original_times"], report["candidate_times"], report["loops"] = [], [], 0
            report["mismatches"], report["checks"] = [], []
            report["coverage"], report["found"] = {}, []
        events: list[dict[str, Any]] = []
        for sighting in sightings[:20]:
            _append(events, {"event": sighting.event, "detail": sighting.detail,
                             "context": sighting.context})
        report["audit_events"] = events
        reason = report["reason"]
        report["reason"] = reason[:_max_text] if _type(reason) is _str else "?"
        report["mismatches"] = report["mismatches"][:_max_mismatches] \
            if _type(report["mismatches"]) is _list else []
        data = serialise(report)
        if data is None:
            fallback = {"format": _format, "nonce": report["nonce"], "status": "error",
                        "reason": "the shadow's report could not be encoded within its limits",
                        "calls": 0, "mismatches": [], "original_times": [],
                        "candidate_times": [], "loops": 0, "hash_seed": seed,
                        "audit_events": [], "fingerprints": [], "checks": [],
                        "examples": 0, "notes": [], "coverage": {}, "found": [],
                        "phases": {}}
            data = serialise(fallback) or b""
        view = _memoryview(data)
        while _len(view):
            view = view[_write(fd, view):]
        _close(fd)
        _exit(0)

    return finish
