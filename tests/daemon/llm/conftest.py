"""Fixtures for the model-path tests: the session-wide real vLLM server."""

from tests.vllm_server import vllm_fixture

__all__ = ["vllm_fixture"]
