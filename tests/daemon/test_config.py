"""Tests for daemon.config: embedded defaults, the shipped file, and errors with positions."""

from pathlib import Path

import pytest
from pydantic import ValidationError

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


@pytest.mark.parametrize("value, expected", [
    ("rules", "rules"), ("llm", "llm"), ("both", "both"), (["rules", "llm"], "both"),
    (["llm"], "llm"), ("rules,llm", "both"), ("llm, rules", "both")])
def test_proposer_takes_a_list(value: object, expected: str) -> None:
    """`proposer: [rules, llm]` (and rules,llm from the CLI) means both; one name stays itself."""
    assert DaemonConfig.model_validate({"proposer": value}).proposer == expected


@pytest.mark.parametrize("value", [["rules", "gpu"], [], "rules,magic"])
def test_proposer_list_with_an_unknown_name_is_refused(value: object) -> None:
    """A proposer list naming anything but rules and llm is a validation error."""
    with pytest.raises(ValidationError):
        DaemonConfig.model_validate({"proposer": value})


def test_a_bad_command_line_override_is_one_clear_error() -> None:
    """An out-of-range value from the command line is a ConfigError naming the setting."""
    with pytest.raises(ConfigError, match=r"metrics.port: .*99999"):
        DaemonConfig().with_overrides(**{"metrics.port": 99999})
    with pytest.raises(ConfigError, match=r"proposer: .*magic"):
        DaemonConfig().with_overrides(proposer="magic")
