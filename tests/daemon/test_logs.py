"""Tests for daemon/logs.py: JSON lines, and the fields a cycle adds to every line."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from daemon.logs import configure, get_logger, log_context


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """structlog writing JSON lines to a buffer, put back to its defaults afterwards."""
    out = io.StringIO()
    configure("json", "info", stream=out)
    try:
        yield out
    finally:
        structlog.reset_defaults()


def _parsed(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_log_context_adds_fields_an_event_does_not_set(lines: io.StringIO) -> None:
    """Inside log_context every line gets its fields, an event's own value wins, outside none."""
    log = get_logger()
    with log_context(target="shop.pricing:total", version="original"):
        log.info("cycle_started", target="shop.pricing:total")
        log.info("proposed", target="shop.pricing:total", version="ab12")
    log.info("metrics_listening")
    started, proposed, after = _parsed(lines)
    assert (started["target"], started["version"]) == ("shop.pricing:total", "original")
    assert proposed["version"] == "ab12"
    assert "version" not in after and "target" not in after


def test_json_lines_carry_event_level_and_timestamp(lines: io.StringIO) -> None:
    """The JSON format writes one object per line with the event, its level and a UTC time."""
    get_logger().warning("rolled_back", target="m:f", version="cd34", reason="operator")
    (line,) = _parsed(lines)
    assert line["event"] == "rolled_back" and line["level"] == "warning"
    assert str(line["timestamp"]).endswith("Z")
