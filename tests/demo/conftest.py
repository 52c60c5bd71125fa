"""Fixtures for the demo workload tests: no test may leave a worker thread behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def no_leaked_workers() -> Iterator[None]:
    """Fail the test that leaves a demo worker thread running."""
    yield
    leaked = [t.name for t in threading.enumerate() if t.name.startswith("demo-worker-")]
    assert not leaked, f"demo worker threads still running: {leaked}"
