"""Session-wide fixtures: the real vLLM CPU server (built into a cache outside the clone)."""

from tests.vllm_server import vllm_fixture

__all__ = ["vllm_fixture"]
