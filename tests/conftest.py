"""Session-wide fixtures: the real vLLM CPU server (built into a cache outside the clone),
the isolation this machine gives shadow runs, and the check that a test leaves no child."""

from collections.abc import Iterator

import psutil
import pytest

from envelope.isolation import Isolation, probe_isolation
from tests.vllm_server import vllm_fixture

__all__ = ["isolation", "no_leaked_children", "vllm_fixture"]


@pytest.fixture(scope="session")
def isolation() -> Isolation:
    """What the sandbox can get here (namespaces, read-only mounts, dropped capabilities)."""
    return probe_isolation()


@pytest.fixture
def no_leaked_children() -> Iterator[None]:
    """Fails the test if it left a child process (or zombie) of this process behind.

    Modules that run shadows opt in with ``pytestmark = pytest.mark.usefixtures(...)``.
    """
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    yield
    after = {child.pid for child in psutil.Process().children(recursive=True)}
    assert after <= before, "the sandbox left a child process (or zombie) behind"
