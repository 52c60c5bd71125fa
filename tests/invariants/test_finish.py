"""The report writer: whatever the harness hands it, the parent can parse what it writes."""

from __future__ import annotations

import os
import subprocess
import sys

from invariants.report import parse_child_report

WRITER = '''
import json, os, sys
from invariants.finish import make_finisher
fd = int(sys.argv[1])
finish = make_finisher(fd, 1 << 20, [])
fields = json.loads(sys.argv[2])
tampering = json.loads(sys.argv[3])
json.dumps = lambda *args, **kwargs: "forged"
os.write = lambda *args: 0
finish("nonce-1", fields, tampering)
'''


def write(fields: str, tampering: str = "[]") -> bytes:
    read_fd, write_fd = os.pipe()
    try:
        subprocess.run([sys.executable, "-c", WRITER, str(write_fd), fields, tampering],
                       pass_fds=(write_fd,), check=True, timeout=30,
                       env={**os.environ, "PYTHONHASHSEED": "0"})
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        return fh.read()


def test_the_report_is_written_even_when_json_and_os_write_are_rebound() -> None:
    """The writer's own bindings survive rebinding json.dumps and os.write."""
    fields = ('{"status": "ok", "calls": 1, "fingerprints": ["0123456789abcdef"], '
              '"original_times": [], "candidate_times": []}')
    report = parse_child_report(write(fields), nonce="nonce-1", max_bytes=1 << 20)
    assert (report.status, report.calls, report.hash_seeds_checked) == ("ok", 1, (0,))


def test_tampering_turns_any_report_into_forbidden() -> None:
    """When the guard lists a rebinding, the report says forbidden whatever the harness said."""
    fields = ('{"status": "ok", "calls": 1, "fingerprints": ["0123456789abcdef"], '
              '"original_times": [1.0], "candidate_times": [0.1]}')
    report = parse_child_report(write(fields, '["json.dumps"]'), nonce="nonce-1",
                                max_bytes=1 << 20)
    assert report.status == "forbidden" and "json.dumps" in report.reason
    assert report.original_times == ()


def test_fields_that_are_not_plain_data_give_an_error_report() -> None:
    """A non-finite time or an unknown type cannot be encoded: a valid error report instead."""
    fields = '{"status": "ok", "original_times": [1e999], "candidate_times": [1.0]}'
    report = parse_child_report(write(fields), nonce="nonce-1", max_bytes=1 << 20)
    assert report.status == "error" and "could not be encoded" in report.reason
