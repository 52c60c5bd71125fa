"""`selfmod llm check`: reaches the model server and says what an operator needs to know."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.daemon.llm.scripted import ScriptedModel
from tests.daemon.llm.standin import Reply, Seen, StandIn, chat_body


def _check(tmp_path: Path, url: str, model: str, *extra: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "selfmod.yaml"
    config.write_text(f"version: 1\nllm: {{base_url: '{url}', model: '{model}', "
                      "timeout_seconds: 10, max_tokens: 900}\n")
    return subprocess.run([sys.executable, "-m", "daemon.cli", "llm", "check", "--config",
                           str(config), *extra], capture_output=True, text=True, timeout=60,
                          check=False)


def _server(models: dict[str, Any], chat: Callable[[Seen], Reply],
            health: int = 200) -> Callable[[Seen], Reply]:
    def reply(seen: Seen) -> Reply:
        if seen.path.endswith("/health"):
            return Reply(health, {} if health == 200 else {"error": "not found"})
        if seen.path.endswith("/models"):
            return Reply(200, models)
        return chat(seen)
    return reply


def test_reports_context_length_and_structured_output(tmp_path: Path) -> None:
    """Against a vLLM-shaped server: the model, its context length, structured output works."""
    with StandIn(ScriptedModel({}, name="coder", max_model_len=8192)) as server:
        result = _check(tmp_path, server.url, "coder", "--json")
        text = _check(tmp_path, server.url, "coder")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["ok"], data["model"], data["context_length"], data["structured_output"]) == \
        (True, "coder", 8192, True)
    assert data["max_tokens"] == 900
    assert "context length: 8192 tokens" in text.stdout
    assert "structured output: yes" in text.stdout


def test_a_server_that_refuses_response_format_is_reported_with_the_fallback(
        tmp_path: Path) -> None:
    """A 400 for response_format means no structured output; the text names the fallback."""
    def chat(seen: Seen) -> Reply:
        if isinstance(seen.body, dict) and "response_format" in seen.body:
            return Reply(400, {"error": {"message": "response_format is not supported"}})
        return Reply(200, chat_body("ok"))

    models = {"object": "list", "data": [{"id": "m", "object": "model"}]}
    with StandIn(_server(models, chat)) as server:
        result = _check(tmp_path, server.url, "m", "--json")
        text = _check(tmp_path, server.url, "m")
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["structured_output"] is False
    assert "response_format" in data["structured_output_detail"]
    assert data["context_length"] is None
    assert "structured output: no (selfmod asks for fenced code instead)" in text.stdout
    assert "context length: not reported by the server" in text.stdout


def test_a_server_that_ignores_response_format_is_not_taken_for_one_that_honours_it(
        tmp_path: Path) -> None:
    """Prose where a JSON object was asked for is reported as no structured output."""
    models = {"object": "list", "data": [{"id": "m", "object": "model"}]}
    with StandIn(_server(models, lambda _: Reply(200, chat_body("Sure! Here it is.")))) as server:
        data = json.loads(_check(tmp_path, server.url, "m", "--json").stdout)
    assert data["ok"] is True and data["structured_output"] is False
    assert "Sure!" in data["structured_output_detail"]


def test_a_llama_cpp_shaped_server_without_health_is_fine(tmp_path: Path) -> None:
    """No /health (404) is not a failure; a context length under meta.n_ctx is read."""
    models = {"object": "list", "data": [{"id": "m", "object": "model",
                                          "meta": {"n_ctx_train": 4096, "n_ctx": 2048}}]}
    with StandIn(_server(models, lambda _: Reply(200, chat_body('{"ok": true}')),
                         health=404)) as server:
        data = json.loads(_check(tmp_path, server.url, "m", "--json").stdout)
    assert data["ok"] is True
    assert data["context_length"] == 2048
    assert data["structured_output"] is True


def test_an_unreachable_server_fails_with_the_reason(tmp_path: Path) -> None:
    """Nothing listening: exit 1, not OK, and no probe of structured output."""
    with StandIn(ScriptedModel({})) as server:
        url = server.url
    result = _check(tmp_path, url, "coder", "--json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["error"] and data["structured_output"] is None
