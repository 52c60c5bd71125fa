"""The frozen oracle: separate, protected, faithful to the file on disk."""

from __future__ import annotations

import hashlib
import inspect
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo import logstats, oracle
from demo.workload import make_pool
from invariants import targets

PUBLIC = [name for name, obj in vars(logstats).items()
          if inspect.isfunction(obj) and obj.__module__ == logstats.__name__]


def test_oracle_is_a_separate_protected_module() -> None:
    """The oracle is its own module object under a protected name, not logstats."""
    frozen = oracle.oracle_module()
    assert frozen is not logstats
    assert frozen.__name__ == "selfmod_demo_oracle"
    assert targets.is_protected(frozen.__name__)
    assert not targets.is_protected(logstats.__name__)
    assert not targets.in_scope("selfmod_demo_oracle:process_batch", ["*"])


def test_oracle_functions_are_not_the_live_ones() -> None:
    """Every logstats function has a distinct twin, with its own code, in the oracle."""
    assert "process_batch" in PUBLIC and len(PUBLIC) >= 10
    frozen = oracle.oracle_module()
    for name in PUBLIC:
        live, twin = getattr(logstats, name), getattr(frozen, name)
        assert twin is not live
        assert twin.__code__ is not live.__code__
        assert twin.__globals__ is vars(frozen)


def test_oracle_hash_is_the_hash_of_the_file() -> None:
    """ORACLE_SHA256 is the sha256 of logstats.py as it is on disk."""
    path = Path(logstats.__file__)
    assert path.resolve() == oracle.ORACLE_PATH
    assert hashlib.sha256(path.read_bytes()).hexdigest() == oracle.ORACLE_SHA256
    assert targets.sha256_text(path.read_text(encoding="utf-8")) == oracle.ORACLE_SHA256


def test_oracle_agrees_with_logstats_on_generated_batches() -> None:
    """On realistic generated input the oracle and the live module give equal results."""
    for batch in make_pool(seed=3, batches=2, size=300):
        assert oracle.oracle_process_batch(list(batch)) == logstats.process_batch(list(batch))


@pytest.fixture
def copy_module() -> Iterator[types.ModuleType]:
    """A private copy of logstats whose code a test may change without touching the live one."""
    module, _ = oracle.load_oracle(name="selfmod_demo_test_copy")
    yield module


def test_locate_mismatch_finds_nothing_when_all_agree(copy_module: types.ModuleType) -> None:
    """An unchanged module produces no mismatch."""
    batch = list(make_pool(seed=4, batches=1, size=200)[0])
    assert oracle.locate_mismatch(copy_module, batch) == ("", "")


def test_locate_mismatch_names_the_wrong_function(copy_module: types.ModuleType) -> None:
    """A wrong function deep in the pipeline is named, not just process_batch."""
    wrong = targets.compile_function(
        "def latencies(records):\n    return [rec[7] + 1 for rec in records]\n",
        copy_module.latencies, filename="<wrong latencies>")
    copy_module.latencies.__code__ = wrong
    batch = list(make_pool(seed=4, batches=1, size=200)[0])
    name, detail = oracle.locate_mismatch(copy_module, batch)
    assert name == "latencies"
    assert detail.startswith("latencies(") and "expected" in detail
    assert oracle.oracle_process_batch(batch) == logstats.process_batch(batch)


def test_locate_mismatch_reports_an_exception(copy_module: types.ModuleType) -> None:
    """A function that raises where the original returned counts as a mismatch."""
    wrong = targets.compile_function(
        "def server_errors(records):\n    raise KeyError('boom')\n",
        copy_module.server_errors, filename="<raising server_errors>")
    copy_module.server_errors.__code__ = wrong
    name, detail = oracle.locate_mismatch(copy_module, list(make_pool(5, 1, 50)[0]))
    assert name == "server_errors"
    assert "KeyError" in detail
