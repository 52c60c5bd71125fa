"""The report parser: whatever the child writes, the parent gets a validated report."""

from __future__ import annotations

import json
from typing import Any

import pytest

from invariants.report import REPORT_FORMAT, parse_child_report

NONCE = "0123456789abcdef"
COVERED = {"statements": 4, "missing_lines": [], "branches": 2, "missing_branches": []}


def valid(**changes: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "format": REPORT_FORMAT, "nonce": NONCE, "status": "ok", "reason": "", "calls": 2,
        "mismatches": [], "original_times": [1e-3, 2e-3], "candidate_times": [5e-4, 1e-3],
        "loops": 10, "hash_seed": 0, "audit_events": [],
        "fingerprints": ["0123456789abcdef", "fedcba9876543210"],
        "checks": ["differential", "benchmark"], "examples": 0, "notes": [],
        "coverage": {"candidate": COVERED, "original": COVERED}, "found": [],
        "phases": {"load": 0.5, "replay": 1.25, "benchmark": 3},
    }
    report.update(changes)
    return report


def parse(payload: Any, max_bytes: int = 1 << 20) -> Any:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_child_report(data, nonce=NONCE, max_bytes=max_bytes)


def test_a_valid_report_is_parsed_field_by_field() -> None:
    """A well-formed report becomes a ShadowReport with the same values."""
    report = parse(valid())
    assert report.status == "ok" and report.calls == 2 and report.loops == 10
    assert report.original_times == (1e-3, 2e-3) and report.hash_seeds_checked == (0,)
    assert report.phases == {"load": 0.5, "replay": 1.25, "benchmark": 3.0}


def test_coverage_and_found_inputs_are_parsed() -> None:
    """Missing lines and branches of both codes, and found inputs, come through as data."""
    gap = {"statements": 6, "missing_lines": [4, 5], "branches": 4,
           "missing_branches": [[3, 4], [5, -1]]}
    report = parse(valid(coverage={"candidate": gap}, found=["((1, 2), {})"]))
    assert report.coverage is not None and not report.coverage.complete
    assert report.coverage.missing_lines == (4, 5)
    assert report.coverage.missing_branches == ((3, 4), (5, -1))
    assert report.original_coverage is None and report.found == ("((1, 2), {})",)
    assert parse(valid(coverage={})).coverage is None


def test_a_mismatch_report_carries_its_evidence() -> None:
    """Mismatch entries are parsed into Mismatch values."""
    mismatch = {"index": 1, "args_repr": "(1,)", "expected": "1", "actual": "2",
                "kind": "value"}
    report = parse(valid(status="mismatch", mismatches=[mismatch]))
    assert report.status == "mismatch" and report.mismatches[0].actual == "2"


@pytest.mark.parametrize("payload", [
    b"", b"\x00\xff garbage", b"{", b'{"status": "ok"', b"[1, 2, 3]", b"null",
    b"[" * 100_000, b'{"calls": 1' + b"0" * 5000 + b"}",
    json.dumps(valid())[:-20].encode(),
], ids=["empty", "binary", "brace", "truncated", "list", "null", "deep", "huge-int",
        "truncated-valid"])
def test_garbage_and_truncated_json_is_an_error(payload: bytes) -> None:
    """Unparseable, truncated or absurd bytes give status error, never an exception."""
    report = parse(payload)
    assert report.status == "error" and "invalid report" in report.reason


@pytest.mark.parametrize("changes", [
    {"status": "timeout"}, {"status": "great"}, {"calls": -1}, {"calls": True},
    {"calls": 1.5}, {"original_times": [1.0]}, {"original_times": [-1.0, 1.0]},
    {"original_times": ["1", 1.0]}, {"reason": "x" * 10_000}, {"format": 99},
    {"nonce": "forged"}, {"extra": 1}, {"mismatches": [{"index": 0}]},
    {"status": "mismatch"}, {"audit_events": [{"event": "x", "detail": "y",
                                                "context": "elsewhere"}]},
    {"fingerprints": ["not hex at all!"]}, {"fingerprints": []},
    {"hash_seed": 2**40},
    {"coverage": []}, {"coverage": {"elsewhere": COVERED}},
    {"coverage": {"candidate": {**COVERED, "missing_lines": [0]}}},
    {"coverage": {"candidate": {**COVERED, "missing_lines": [1, 2, 3, 4, 5]}}},
    {"coverage": {"candidate": {**COVERED, "missing_branches": [[1]]}}},
    {"coverage": {"candidate": {**COVERED, "missing_branches": [[1, "2"]]}}},
    {"coverage": {"candidate": {**COVERED, "extra": 1}}},
    {"found": ["x" * 5000]}, {"found": [1]}, {"found": ["()"] * 21},
    {"phases": []}, {"phases": {"nap": 1.0}}, {"phases": {"load": -1}},
    {"phases": {"load": "1"}}, {"phases": {"load": True}}, {"phases": {"load": 1e9}},
], ids=lambda changes: ",".join(changes))
def test_every_field_is_validated(changes: dict[str, Any]) -> None:
    """A wrong type, range, size, nonce, unknown key or inconsistency rejects the report."""
    assert parse(valid(**changes)).status == "error"


def test_a_missing_field_is_an_error() -> None:
    """A report without one of its fields is rejected."""
    payload = valid()
    del payload["loops"]
    assert "missing" in parse(payload).reason


def test_non_finite_numbers_are_rejected() -> None:
    """NaN or Infinity smuggled in as JSON constants are rejected."""
    text = json.dumps(valid()).replace("0.001,", "NaN,", 1)
    assert parse(text.encode()).status == "error"


def test_an_oversized_report_is_rejected() -> None:
    """A report larger than the byte cap is rejected before it is parsed."""
    report = parse(valid(reason="x" * 1000), max_bytes=500)
    assert report.status == "error" and "larger than 500 bytes" in report.reason
