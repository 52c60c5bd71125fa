"""`selfmod envelope check` and `selfmod envelope schema`, run as an operator runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SELFMOD = [sys.executable, "-m", "daemon.cli"]
SHIPPED = Path(__file__).resolve().parents[2] / "config" / "envelope.yaml"


def selfmod(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SELFMOD, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)


def policy_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "envelope.yaml"
    path.write_text(text)
    path.chmod(0o644)
    return path


@pytest.mark.parametrize(("text", "message"), [
    ("version: 3\nbudgets:\n  cycles_per_hour: many\n",
     ":3:20: budgets.cycles_per_hour: must be a whole number (got 'many')"),
    ("version: 3\nbudgets:\n  cycles_per_hours: 5\n",
     ":3:3: budgets.cycles_per_hours: unknown key 'cycles_per_hours'; did you mean "
     "'cycles_per_hour'?"),
    ("version: 2\nscope: {include: [\n", ":3:1: YAML syntax:"),
    ("", ":1:1: the file is empty"),
], ids=["wrong-type", "unknown-key", "syntax", "empty"])
def test_check_names_file_line_and_column_and_fails(tmp_path: Path, text: str,
                                                    message: str) -> None:
    """A bad policy is reported as FILE:LINE:COLUMN: what is wrong, with a non-zero exit."""
    path = policy_file(tmp_path, text)
    result = selfmod("envelope", "check", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"selfmod: error: {path}{message}" in result.stderr


def test_check_with_json_gives_the_error_as_json(tmp_path: Path) -> None:
    """--json puts the same located message in a JSON object, still exiting non-zero."""
    path = policy_file(tmp_path, "version: 1\nsandbox:\n  cpu_seconds: 0\n")
    result = selfmod("envelope", "check", str(path), "--json", cwd=tmp_path)
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert error.startswith(f"{path}:3:16: sandbox.cpu_seconds: must be >= 1 (got 0)")


def test_check_refuses_a_world_writable_file(tmp_path: Path) -> None:
    """A policy anyone could edit is refused with the command that fixes it."""
    path = policy_file(tmp_path, "version: 1\n")
    path.chmod(0o666)
    result = selfmod("envelope", "check", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert "is world-writable" in result.stderr and f"chmod o-w {path}" in result.stderr


def test_check_accepts_the_shipped_policy(tmp_path: Path) -> None:
    """The shipped config/envelope.yaml validates, and --json reports its version and hash."""
    result = selfmod("envelope", "check", str(SHIPPED), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["version"] == 1 and len(data["sha256"]) == 64


def test_schema_is_a_json_schema_that_validates_the_shipped_policy(tmp_path: Path) -> None:
    """`envelope schema` prints a valid JSON Schema under which the shipped file passes."""
    jsonschema = pytest.importorskip("jsonschema")
    result = selfmod("envelope", "schema", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load(SHIPPED.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"version": 1, "budgets": {"cycles_per_hours": 5}}, schema)
