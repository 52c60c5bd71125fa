"""Tests for daemon.config: embedded defaults, the shipped file, and errors with positions."""

from pathlib import Path

import pytest

from daemon.config import DaemonConfig, WorkloadConfig, load_config
from daemon.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_config_equals_embedded_defaults_but_for_the_policy_path():
    """config/selfmod.yaml documents the defaults; it only adds the policy file and the demo."""
    shipped = load_config(ROOT / "config" / "selfmod.yaml")
    assert shipped.policy == ROOT / "config" / "envelope.yaml"
    assert shipped.workload.app == "demo.workload:main"
    assert shipped.model_copy(update={"policy": None, "workload": WorkloadConfig()}) == \
        DaemonConfig()


def test_errors_name_file_line_and_column(tmp_path):
    """A wrong type deep in the file is reported with its line and column."""
    path = tmp_path / "selfmod.yaml"
    path.write_text("version: 1\nprofiler:\n  hz: fast\n")
    with pytest.raises(ConfigError, match=r"selfmod.yaml:3:3: profiler.hz"):
        load_config(path)
    path.write_text("version: 1\nprofiler: {hz: 10\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    path.write_text("version: 1\nunknown_key: 3\n")
    with pytest.raises(ConfigError, match=r":2:1: unknown_key"):
        load_config(path)


def test_overrides_replace_dotted_fields_and_ignore_none():
    """with_overrides sets nested fields and leaves a None override alone."""
    config = DaemonConfig().with_overrides(**{"workload.app": "m:f", "proposer": None})
    assert config.workload.app == "m:f" and config.proposer == "rules"
