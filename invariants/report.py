"""The shadow's report, and the parser that turns the child's JSON into one.

The child is untrusted once a candidate has run in it, so its output is data to
validate, never to believe: every field is checked for type, range and size, and
anything unknown, missing, oversized or inconsistent turns the whole report into
status ``error``. The parser never raises.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from invariants.job import HASH_SEED_MAX

# History of REPORT_FORMAT (the child's JSON on the result pipe):
#   1 — first format.
#   2 — adds checks (which checks ran), examples (generated inputs compared) and notes
#       (checks skipped, and why); mismatch kinds property and invariant.
#   3 — adds coverage (lines and branches of the candidate and the original that the
#       checks ran) and found (inputs found by search, as Python literals); mismatch
#       kinds stateful, symbolic and found.
#   4 — adds phases (seconds the child spent loading, replaying, checking generated
#       inputs, searching and benchmarking).
REPORT_FORMAT = 4

STATUSES = ("ok", "mismatch", "error", "timeout", "crashed", "limit", "forbidden")
CHILD_STATUSES = frozenset({"ok", "mismatch", "error", "limit", "forbidden"})
MISMATCH_KINDS = frozenset({"outcome", "exception", "value", "iterator", "mutation", "alias",
                            "output", "uncomparable", "hash_seed", "property",
                            "invariant", "stateful", "symbolic", "found"})
# The checks a report can say ran, in the order a shadow runs them.
CHECKS = ("differential", "invariant", "property", "benchmark")
CONTEXTS = frozenset({"candidate", "original", "harness"})
# Where a shadow child's time went (see invariants.shadow.run_job); the parent adds the
# wall time of each child it ran, as "child:<mode>" (see envelope.sandbox).
PHASES = ("load", "replay", "property", "search", "benchmark")
MAX_MISMATCHES = 10
MAX_EVENTS = 50
MAX_SAMPLES = 10_000
MAX_CALLS = 10_000_000
MAX_TEXT = 2_000
MAX_REPR = 1_000
MAX_NOTES = 5
MAX_NOTE = 300
MAX_FOUND = 20
MAX_FOUND_CHARS = 4_000
MAX_LINE = 1_000_000
TAIL_CHARS = 4_096


@dataclass(frozen=True)
class Mismatch:
    """One call whose outcomes differ, with bounded renderings as evidence."""

    index: int
    args_repr: str
    expected: str
    actual: str
    kind: str


@dataclass(frozen=True)
class CodeCoverage:
    """Which lines and branches of one function's code the checks ran.

    Line numbers are the function's source lines counted from 1 at its ``def``.
    A branch is ``(from, to)``; ``to`` is negative for leaving the function.
    """

    statements: int
    missing_lines: tuple[int, ...]
    branches: int
    missing_branches: tuple[tuple[int, int], ...]

    @property
    def complete(self) -> bool:
        return not self.missing_lines and not self.missing_branches


@dataclass(frozen=True)
class AuditEvent:
    """A forbidden event the tripwire saw, and who raised it."""

    event: str
    detail: str
    context: str


@dataclass(frozen=True)
class ShadowReport:
    """What a shadow run found. ``duration`` and the tails are measured by the parent.

    ``fingerprints`` holds a short digest of the candidate's outcome per replayed
    call, which lets the parent compare runs under different hash seeds.
    ``checks`` names the checks that ran to completion (see :data:`CHECKS`),
    ``examples`` counts the generated inputs compared, and ``notes`` says which
    checks were skipped and why.
    """

    status: str
    reason: str = ""
    calls: int = 0
    mismatches: tuple[Mismatch, ...] = ()
    original_times: tuple[float, ...] = ()
    candidate_times: tuple[float, ...] = ()
    loops: int = 0
    hash_seeds_checked: tuple[int, ...] = ()
    audit_events: tuple[AuditEvent, ...] = ()
    duration: float = 0.0
    stdout_tail: str = ""
    stderr_tail: str = ""
    fingerprints: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    examples: int = 0
    notes: tuple[str, ...] = ()
    # what the checks ran of the candidate and of the original; None when not measured
    coverage: CodeCoverage | None = None
    original_coverage: CodeCoverage | None = None
    # inputs found by search or the symbolic diff, as Python literals of (args, kwargs)
    found: tuple[str, ...] = ()
    # seconds per phase of the run (PHASES, and "child:<mode>" per child, measured outside)
    phases: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the audit log and ``--json`` output."""
        return asdict(self)


class _Invalid(Exception):
    pass


def error_report(reason: str, **fields: Any) -> ShadowReport:
    return ShadowReport(status="error", reason=reason[:MAX_TEXT], **fields)


def parse_child_report(data: bytes, *, nonce: str, max_bytes: int) -> ShadowReport:
    """Validate the child's JSON; anything wrong yields an ``error`` report saying what."""
    try:
        return _parse(data, nonce, max_bytes)
    except _Invalid as exc:
        return error_report(f"invalid report from the shadow: {exc}")
    except (ValueError, RecursionError, MemoryError) as exc:  # json and int conversion
        return error_report(f"invalid report from the shadow: {type(exc).__name__}")


def _reject_constant(name: str) -> Any:
    raise _Invalid(f"non-finite number {name}")


_FIELDS = frozenset({"format", "nonce", "status", "reason", "calls", "mismatches",
                     "original_times", "candidate_times", "loops", "hash_seed",
                     "audit_events", "fingerprints", "checks", "examples", "notes",
                     "coverage", "found", "phases"})


def _parse(data: bytes, nonce: str, max_bytes: int) -> ShadowReport:
    if not data:
        raise _Invalid("empty")
    if len(data) > max_bytes:
        raise _Invalid(f"larger than {max_bytes} bytes")
    payload = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    if not isinstance(payload, dict):
        raise _Invalid("not a JSON object")
    keys = set(payload)
    if keys != _FIELDS:
        raise _Invalid(f"unknown fields {sorted(keys - _FIELDS)[:5]}, "
                       f"missing {sorted(_FIELDS - keys)[:5]}")
    if payload["format"] != REPORT_FORMAT or type(payload["format"]) is not int:
        raise _Invalid(f"format {payload['format']!r}")
    if payload["nonce"] != nonce:
        raise _Invalid("wrong nonce (not written by the harness)")
    status = _text(payload, "status", 20)
    if status not in CHILD_STATUSES:
        raise _Invalid(f"status {status!r}")
    calls = _int(payload, "calls", MAX_CALLS)
    original = _times(payload, "original_times")
    candidate = _times(payload, "candidate_times")
    if len(original) != len(candidate):
        raise _Invalid("unpaired timings")
    mismatches = tuple(_mismatch(item) for item in _list(payload, "mismatches", MAX_MISMATCHES))
    if (status == "mismatch") != bool(mismatches):
        raise _Invalid(f"status {status} with {len(mismatches)} mismatches")
    fingerprints = tuple(_fingerprint(item) for item in
                         _list(payload, "fingerprints", MAX_CALLS))
    if status == "ok" and len(fingerprints) != calls:
        raise _Invalid("fingerprints do not cover every call")
    return ShadowReport(
        status=status,
        reason=_text(payload, "reason", MAX_TEXT),
        calls=calls,
        mismatches=mismatches,
        original_times=original,
        candidate_times=candidate,
        loops=_int(payload, "loops", 10**9),
        hash_seeds_checked=(_int(payload, "hash_seed", HASH_SEED_MAX),),
        audit_events=tuple(_event(item) for item in
                           _list(payload, "audit_events", MAX_EVENTS)),
        fingerprints=fingerprints,
        checks=_checks(payload),
        examples=_int(payload, "examples", MAX_CALLS),
        notes=tuple(_note(item) for item in _list(payload, "notes", MAX_NOTES)),
        coverage=_coverage(payload["coverage"], "candidate"),
        original_coverage=_coverage(payload["coverage"], "original"),
        found=tuple(_found(item) for item in _list(payload, "found", MAX_FOUND)),
        phases=_phases(payload["phases"]),
    )


def _coverage(value: Any, which: str) -> CodeCoverage | None:
    if type(value) is not dict or not set(value) <= {"candidate", "original"}:
        raise _Invalid("coverage is not an object with candidate and original")
    item = value.get(which)
    if item is None:
        return None
    if type(item) is not dict or set(item) != {"statements", "missing_lines", "branches",
                                                "missing_branches"}:
        raise _Invalid(f"malformed {which} coverage")
    statements = _int(item, "statements", MAX_LINE)
    branches = _int(item, "branches", MAX_LINE)
    lines = _list(item, "missing_lines", statements)
    pairs = _list(item, "missing_branches", branches)
    if any(type(n) is not int or not 0 < n <= MAX_LINE for n in lines):
        raise _Invalid(f"{which} coverage names a line out of range")
    if any(type(pair) is not list or len(pair) != 2 or
           any(type(n) is not int or not -MAX_LINE <= n <= MAX_LINE for n in pair)
           for pair in pairs):
        raise _Invalid(f"{which} coverage holds a malformed branch")
    return CodeCoverage(statements, tuple(lines), branches,
                        tuple((a, b) for a, b in pairs))


def _phases(value: Any) -> dict[str, float]:
    if not isinstance(value, dict) or not set(value) <= set(PHASES):
        raise _Invalid("phases is not an object of known phases")
    if not all(type(v) in (int, float) and 0 <= v < 1e6 for v in value.values()):
        raise _Invalid("a phase's seconds are not a number from 0 to 1e6")
    return {name: float(seconds) for name, seconds in value.items()}


def _found(item: Any) -> str:
    if type(item) is not str or len(item) > MAX_FOUND_CHARS:
        raise _Invalid(f"a found input is not a string of at most {MAX_FOUND_CHARS} characters")
    return item


def _checks(payload: dict[str, Any]) -> tuple[str, ...]:
    names = _list(payload, "checks", len(CHECKS))
    if any(type(name) is not str or name not in CHECKS for name in names) or \
            len(set(names)) != len(names):
        raise _Invalid(f"checks {names!r} are not distinct names from {CHECKS}")
    return tuple(names)


def _note(item: Any) -> str:
    if type(item) is not str or len(item) > MAX_NOTE:
        raise _Invalid(f"a note is not a string of at most {MAX_NOTE} characters")
    return item


def _text(obj: dict[str, Any], key: str, limit: int) -> str:
    value = obj[key]
    if type(value) is not str or len(value) > limit:
        raise _Invalid(f"{key} is not a string of at most {limit} characters")
    return value


def _int(obj: dict[str, Any], key: str, limit: int) -> int:
    value = obj[key]
    if type(value) is not int or not 0 <= value <= limit:
        raise _Invalid(f"{key} is not an integer in 0..{limit}")
    return value


def _list(obj: dict[str, Any], key: str, limit: int) -> list[Any]:
    value = obj[key]
    if type(value) is not list or len(value) > limit:
        raise _Invalid(f"{key} is not a list of at most {limit} items")
    return value


def _times(obj: dict[str, Any], key: str) -> tuple[float, ...]:
    values = _list(obj, key, MAX_SAMPLES)
    for value in values:
        if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
            raise _Invalid(f"{key} holds {value!r}, not a finite non-negative number")
    return tuple(float(value) for value in values)


def _mismatch(item: Any) -> Mismatch:
    if type(item) is not dict or set(item) != {"index", "args_repr", "expected", "actual",
                                                "kind"}:
        raise _Invalid("malformed mismatch")
    kind = _text(item, "kind", 20)
    if kind not in MISMATCH_KINDS:
        raise _Invalid(f"mismatch kind {kind!r}")
    return Mismatch(index=_int(item, "index", MAX_CALLS),
                    args_repr=_text(item, "args_repr", MAX_REPR),
                    expected=_text(item, "expected", MAX_REPR),
                    actual=_text(item, "actual", MAX_REPR), kind=kind)


def _event(item: Any) -> AuditEvent:
    if type(item) is not dict or set(item) != {"event", "detail", "context"}:
        raise _Invalid("malformed audit event")
    context = _text(item, "context", 20)
    if context not in CONTEXTS:
        raise _Invalid(f"audit event context {context!r}")
    return AuditEvent(_text(item, "event", 200), _text(item, "detail", MAX_REPR), context)


def _fingerprint(item: Any) -> str:
    if type(item) is not str or len(item) != 16 or item.strip("0123456789abcdef"):
        raise _Invalid("malformed fingerprint")
    return item


def tail(data: bytes, limit: int = TAIL_CHARS) -> str:
    """The last ``limit`` characters of captured output, decoded leniently."""
    return data[-limit:].decode("utf-8", "replace")
