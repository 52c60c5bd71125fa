"""Fixtures for the checks of the operator-facing configuration files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tooling import ensure_tool

CONFIG = Path(__file__).resolve().parents[2] / "config"


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool, installed from the Debian package if it is missing."""
    return ensure_tool("promtool", "prometheus")


@pytest.fixture(scope="session")
def config_dir() -> Path:
    """The repository's config/ folder."""
    return CONFIG
