"""Tests of envelope/policy.py: the shipped policy, every operator fault, scope and schema."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from envelope.errors import EnvelopeError, PolicyError
from envelope.policy import (
    DEFAULT_POLICY,
    Policy,
    PolicyDocument,
    load_policy,
    parse_policy,
    policy_json_schema,
)

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "envelope.yaml"


def write(directory: Path, text: str | bytes, name: str = "envelope.yaml") -> Path:
    path = directory / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    path.chmod(0o644)
    return path


def position_of(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the first ``needle`` in ``text``."""
    offset = text.index(needle)
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def fault(tmp_path: Path, text: str | bytes) -> PolicyError:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(path) in str(caught.value)
    return caught.value


# -- the shipped file and the defaults ---------------------------------------------------


def test_shipped_policy_loads_and_equals_the_defaults() -> None:
    """config/envelope.yaml validates and equals DEFAULT_POLICY but for the demo's scope."""
    policy = load_policy(SHIPPED)
    assert policy.scope.include == ("demo.logstats:*",)
    demo_defaults = DEFAULT_POLICY.model_copy(
        update={"scope": DEFAULT_POLICY.scope.model_copy(update={"include": ("demo.logstats:*",)})})
    assert policy.document() == demo_defaults.document()
    assert policy.sha256 == hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    assert policy.source == str(SHIPPED)
    assert policy.version == 1


def test_version_alone_is_the_default_policy() -> None:
    """A file holding only `version: 1` is valid and means the defaults."""
    assert parse_policy("version: 1\n", "<test>").document() == DEFAULT_POLICY.document()


def test_sections_left_empty_keep_their_defaults() -> None:
    """A section whose keys are all commented out (null in YAML) means its defaults."""
    policy = parse_policy("version: 1\nsandbox:\n  # cpu_seconds: 5\n  require:\n", "<test>")
    assert policy.sandbox == DEFAULT_POLICY.sandbox


def test_values_are_typed_and_lists_become_tuples() -> None:
    """Loaded values have their declared types and lists are frozen as tuples."""
    policy = parse_policy(
        "version: 3\nscope: {include: ['shop.*'], exclude: ['shop.admin:*']}\n"
        "acceptance: {min_speedup: 2}\n"
        "invariants:\n  declared:\n    - {target: 'shop.*', predicate: 'shop.checks:ok'}\n",
        "<test>")
    assert policy.version == 3
    assert policy.scope.include == ("shop.*",)
    assert policy.acceptance.min_speedup == 2.0
    assert policy.invariants.declared[0].predicate == "shop.checks:ok"


def test_policy_is_frozen_and_hashable() -> None:
    """A policy in force cannot be changed in place, so swapping the object is the whole swap."""
    with pytest.raises(ValidationError):
        DEFAULT_POLICY.acceptance.min_speedup = 0.1  # type: ignore[misc]
    assert hash(DEFAULT_POLICY) == hash(DEFAULT_POLICY.model_copy())


# -- faults, each with file, line, column and a hint -----------------------------------------


def test_syntax_error_names_its_line_and_column(tmp_path: Path) -> None:
    """A YAML syntax error points at the offending token and says to fix the syntax."""
    err = fault(tmp_path, 'version: 1\nscope:\n  include: ["x:*"]\n   exclude: []\n')
    assert (err.line, err.column) == (4, 4)
    assert ":4:4: YAML syntax:" in str(err) and "fix the syntax" in str(err)


def test_tab_indentation_says_to_use_spaces(tmp_path: Path) -> None:
    """A tab in the indentation is located and the hint says YAML needs spaces."""
    err = fault(tmp_path, "version: 1\nbudgets:\n  cycles_per_hour: 12\n\tactive_patches: 3\n")
    assert (err.line, err.column) == (4, 1)
    assert "indent with spaces" in str(err)


def test_wrong_type_names_the_key_and_the_default(tmp_path: Path) -> None:
    """A string where a number belongs is refused, not coerced, and the default is suggested."""
    err = fault(tmp_path, "version: 1\nsandbox:\n  cpu_seconds: '30'\n")
    assert (err.line, err.column) == (3, 16)
    assert "sandbox.cpu_seconds: must be a whole number (got '30')" in str(err)
    assert "set a value such as 30 (the default)" in str(err)


def test_unknown_key_two_levels_deep_is_located_and_corrected(tmp_path: Path) -> None:
    """A misspelt key inside sandbox.require points at the key and suggests the right one."""
    text = SHIPPED.read_text().replace("    network_namespace: false",
                                       "    network_namespce: false")
    err = fault(tmp_path, text)
    assert (err.line, err.column) == position_of(text, "network_namespce")
    assert "sandbox.require.network_namespce: unknown key 'network_namespce'" in str(err)
    assert "did you mean 'network_namespace'?" in str(err)


def test_unknown_top_level_key_lists_the_known_ones(tmp_path: Path) -> None:
    """An unknown section is refused with the sections that exist."""
    err = fault(tmp_path, "version: 1\nfrobnicate: {}\n")
    assert (err.line, err.column) == (2, 1)
    assert "keys allowed here: acceptance, approval" in str(err)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    """An empty file is an error at 1:1 that says what the minimum policy is."""
    err = fault(tmp_path, "")
    assert (err.line, err.column) == (1, 1)
    assert "empty" in str(err) and "version: 1" in str(err)


def test_comment_only_file_is_refused(tmp_path: Path) -> None:
    """A file with only comments counts as empty."""
    err = fault(tmp_path, "# everything commented out\n")
    assert "empty" in str(err)


def test_half_written_file_is_refused_at_the_cut(tmp_path: Path) -> None:
    """The shipped file cut in the middle of a line fails where the text stops."""
    text = SHIPPED.read_text()
    cut = text[:text.index("heapq,") + len("heapq,")]
    err = fault(tmp_path, cut)
    last_line = cut.rsplit("\n", 1)[-1]
    assert (err.line, err.column) == (cut.count("\n") + 1, len(last_line) + 1)
    assert "cut short" in str(err)


def test_half_written_key_is_refused(tmp_path: Path) -> None:
    """A file cut inside a key name fails where the text stops."""
    text = SHIPPED.read_text()
    cut = text[:text.index("  max_growth") + len("  max_gr")]
    err = fault(tmp_path, cut)
    assert (err.line, err.column) == (cut.count("\n") + 1, len("  max_gr") + 1)
    assert "could not find expected ':'" in str(err)


def test_missing_version_is_refused(tmp_path: Path) -> None:
    """A policy without a version is refused with the line to add."""
    err = fault(tmp_path, "scope:\n  include: ['x:*']\n")
    assert (err.line, err.column) == (1, 1)
    assert "version: required key 'version' is missing; add `version: 1`" in str(err)


def test_top_level_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    """A list at the top level is refused with a hint to start with the version."""
    err = fault(tmp_path, "- version: 1\n")
    assert "must be a mapping of sections, not a list" in str(err)


def test_min_speedup_below_one_is_refused(tmp_path: Path) -> None:
    """A speedup threshold under 1.0 would accept slower code; the message gives a ratio."""
    err = fault(tmp_path, "version: 1\nacceptance:\n  min_speedup: 0.5\n")
    assert (err.line, err.column) == (3, 16)
    assert "acceptance.min_speedup: must be >= 1.0 (got 0.5); set a value such as 1.05" \
        in str(err)


def test_non_finite_numbers_are_refused(tmp_path: Path) -> None:
    """An infinite threshold is refused rather than silently never accepting."""
    err = fault(tmp_path, "version: 1\nacceptance: {min_speedup: .inf}\n")
    assert (err.line, err.column) == (2, 27) and "finite" in str(err)


def test_every_issue_is_reported_in_file_order(tmp_path: Path) -> None:
    """Several mistakes are all listed, one per line, in the order they appear."""
    err = fault(tmp_path, "version: 1\nfoo: 1\nacceptance: {min_speedup: 0.5, repeats: 1.5}\n")
    assert [(i.line, i.column) for i in err.issues] == [(2, 1), (3, 27), (3, 41)]
    assert len(str(err).splitlines()) == 3


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    """A key given twice is an error instead of the last one silently winning."""
    err = fault(tmp_path, "version: 1\nbudgets: {}\nversion: 2\n")
    assert (err.line, err.column) == (3, 1)
    assert "duplicate key 'version' (first at line 1)" in str(err)


def test_computed_fields_cannot_be_set_by_the_file(tmp_path: Path) -> None:
    """sha256 and source come from loading; a file that sets them is refused."""
    err = fault(tmp_path, "version: 1\nsha256: abc\n")
    assert (err.line, err.column) == (2, 1) and "computed" in str(err)


def test_python_tags_are_refused(tmp_path: Path) -> None:
    """YAML tags that would construct Python objects are refused at their position."""
    err = fault(tmp_path, "version: !!python/object/apply:os.system ['id']\n")
    assert (err.line, err.column) == (1, 10) and "remove the tag" in str(err)


def test_forbidden_module_cannot_be_allowed(tmp_path: Path) -> None:
    """Allowing a module the static gate forbids is refused at the list item."""
    err = fault(tmp_path, "version: 1\nstatic:\n  allowed_imports: [math, os]\n")
    assert (err.line, err.column) == (3, 27)
    assert "static.allowed_imports[1]: module 'os' is forbidden" in str(err)


def test_glob_without_qualname_is_refused(tmp_path: Path) -> None:
    """A module name without `:*` would match nothing; the hint gives the working glob."""
    err = fault(tmp_path, "version: 1\nscope:\n  include:\n    - shop.pricing\n")
    assert (err.line, err.column) == (4, 7) and "write 'shop.pricing:*'" in str(err)


def test_cross_field_rule_points_at_the_section(tmp_path: Path) -> None:
    """A corpus smaller than one record is refused with what to raise or lower."""
    err = fault(tmp_path, "version: 1\nrecording:\n  max_corpus_bytes: 10\n")
    assert (err.line, err.column) == (3, 3)
    assert "raise max_corpus_bytes or lower max_record_bytes" in str(err)


def test_non_utf8_file_is_located(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are reported at their line and column."""
    err = fault(tmp_path, b"version: 1\nscope:\n  include: ['\xff:*']\n")
    assert (err.line, err.column) == (3, 14) and "UTF-8" in str(err)


# -- the file itself ------------------------------------------------------------------------


def test_missing_file_is_refused(tmp_path: Path) -> None:
    """A missing policy names the path and says how to create one."""
    path = tmp_path / "absent.yaml"
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value).startswith(f"{path}: no such file; create it")
    assert caught.value.line is None


def test_symlink_is_refused(tmp_path: Path) -> None:
    """A policy reached through a symlink is refused, even when its target is valid."""
    real = write(tmp_path, "version: 1\n", "real.yaml")
    link = tmp_path / "envelope.yaml"
    link.symlink_to(real)
    with pytest.raises(PolicyError) as caught:
        load_policy(link)
    assert str(caught.value) == (f"{link}: is a symbolic link, and policies are read only from "
                                 "regular files; replace the link with the file it points to")


def test_world_writable_file_is_refused(tmp_path: Path) -> None:
    """A file anyone can write could widen the envelope; the hint is the chmod to run."""
    path = write(tmp_path, "version: 1\n")
    path.chmod(0o666)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert "is world-writable (mode 0666)" in str(caught.value)
    assert f"run `chmod o-w {path}`" in str(caught.value)


def test_directory_and_fifo_are_refused_without_blocking(tmp_path: Path) -> None:
    """Something that is not a regular file is refused, and a FIFO does not hang the load."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    for path in (tmp_path, fifo):
        with pytest.raises(PolicyError, match="is not a regular file"):
            load_policy(path)


def test_policy_error_is_an_envelope_error() -> None:
    """Callers can catch every envelope failure through the one root class."""
    assert issubclass(PolicyError, EnvelopeError)


def test_load_reads_what_parse_reads(tmp_path: Path) -> None:
    """Loading a copy of the shipped file gives the same settings and hash as parsing its text."""
    copy = tmp_path / "envelope.yaml"
    shutil.copyfile(SHIPPED, copy)
    copy.chmod(0o644)
    loaded = load_policy(copy)
    parsed = parse_policy(SHIPPED.read_text(), str(copy))
    assert loaded == parsed


# -- scope, approval and schema -------------------------------------------------------------


@pytest.mark.parametrize("target", [
    "daemon.cli:main", "daemon.swap:install", "envelope.static:check_candidate",
    "envelope:anything", "invariants.shadow:main", "snapshots.store:Store.put",
    "selfmod_oracle:percentile",
])
def test_protected_targets_are_never_in_scope(target: str) -> None:
    """selfmod's own code and the oracle stay out of scope even when the policy includes all."""
    policy = parse_policy("version: 1\nscope: {include: ['*']}\n", "<test>")
    assert not policy.in_scope(target)


def test_scope_includes_and_excludes() -> None:
    """Include globs admit targets, exclude globs win; an empty include is the app's."""
    policy = parse_policy("version: 1\nscope: {include: ['*'], exclude: ['shop.admin:*']}\n",
                          "<test>")
    assert policy.in_scope("shop.pricing:Cart.total")
    assert not policy.in_scope("shop.admin:reset")
    assert not DEFAULT_POLICY.in_scope("shop.pricing:Cart.total")
    assert DEFAULT_POLICY.in_scope("shop.pricing:Cart.total", ("shop.*:*",))
    assert not policy.in_scope("shop.admin:reset", ("shop.*:*",))


def test_approval_globs() -> None:
    """Targets matching approval.require_for wait for an operator; others do not."""
    policy = parse_policy("version: 1\napproval: {require_for: ['shop.payments:*']}\n", "<test>")
    assert policy.needs_approval("shop.payments:charge")
    assert not policy.needs_approval("shop.pricing:total")


def test_json_schema_describes_the_file() -> None:
    """The schema lists every section, forbids unknown keys and requires the version."""
    schema = policy_json_schema()
    json.dumps(schema)
    assert set(schema["properties"]) == set(PolicyDocument.model_fields)
    assert "sha256" not in schema["properties"] and "source" not in schema["properties"]
    assert schema["required"] == ["version"]
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["Acceptance"]["properties"]["min_speedup"]["minimum"] == 1.0


def test_json_schema_accepts_the_defaults_and_rejects_unknown_keys() -> None:
    """Validated with a JSON Schema implementation, the defaults pass and a typo fails."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = policy_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    document = DEFAULT_POLICY.document().model_dump(mode="json")
    jsonschema.validate(document, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**document, "sandbox": {"cpu_secs": 1}}, schema)


def test_default_policy_is_a_policy_with_a_hash() -> None:
    """DEFAULT_POLICY carries a source and a stable hash of its settings."""
    assert isinstance(DEFAULT_POLICY, Policy)
    assert DEFAULT_POLICY.source == "<built-in defaults>"
    assert len(DEFAULT_POLICY.sha256) == 64


# -- robustness -------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_policy_or_a_policy_error(text: str) -> None:
    """Whatever an editor leaves in the file, parsing yields a Policy or a PolicyError."""
    try:
        parse_policy(text, "<fuzz>")
    except PolicyError as err:
        assert str(err).startswith("<fuzz>")


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_damaged_shipped_file_gives_a_policy_or_a_located_error(data: st.DataObject) -> None:
    """The shipped file with a slice cut out or replaced fails only as a located PolicyError."""
    text = SHIPPED.read_text()
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 40)))
    damaged = text[:start] + data.draw(st.text(max_size=5)) + text[end:]
    try:
        parse_policy(damaged, "envelope.yaml")
    except PolicyError as err:
        assert err.line is not None and err.column is not None, str(err)


def test_control_characters_are_located(tmp_path: Path) -> None:
    """A control character YAML refuses is reported at its line and column."""
    err = fault(tmp_path, "version: 1\nscope:\n  include: ['a\x1f:*']\n")
    assert (err.line, err.column) == (3, 15) and "not allowed in YAML" in str(err)


@pytest.mark.timeout(10)
def test_alias_bomb_is_refused_quickly() -> None:
    """Nested YAML aliases that expand to billions of items are refused in bounded time."""
    lines = ["version: 1", "x0: &a0 [s, s, s, s, s, s, s, s, s]"]
    lines += [f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    lines.append("scope: {include: *a9}")
    with pytest.raises(PolicyError) as caught:
        parse_policy("\n".join(lines) + "\n", "bomb.yaml")
    assert "scope.include[0]: must be a string (got a list of 9 items)" in str(caught.value)
