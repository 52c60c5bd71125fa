"""The policy and the config in force, and what a reload (SIGHUP) may change in a running daemon.

:class:`PolicyInForce` is the one place the policy lives while the daemon runs:
every thread reads it, the policy watcher replaces it, and the integrity
monitor compares its content with what was loaded. :func:`reread_config`
reads the config file again and splits the changes into those a running
daemon applies and those that wait for the next start.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.config import DaemonConfig, load_config
from envelope.policy import Policy

# Config sections a running daemon applies on SIGHUP; the others (state_dir, policy
# path, metrics and control endpoints, the workload) take effect at the next start.
LIVE_CONFIG = frozenset({"proposer", "log", "profiler", "cycle", "llm"})


class PolicyInForce:
    """The policy every part of the daemon reads; replaced whole, never edited."""

    def __init__(self, policy: Policy) -> None:
        self._lock = threading.Lock()
        self._policy = policy
        self._digest = digest(policy)

    def get(self) -> Policy:
        with self._lock:
            return self._policy

    def replace(self, policy: Policy) -> None:
        with self._lock:
            self._policy = policy
            self._digest = digest(policy)

    def hashes(self) -> tuple[str, str]:
        """The content hash taken when the policy was set, and its hash now (they must agree)."""
        with self._lock:
            return self._digest, digest(self._policy)


@dataclass(frozen=True)
class ConfigChange:
    """A re-read config: what to run with now, and which sections changed."""

    config: DaemonConfig  # the new config, less the sections that need a restart
    applied: tuple[str, ...]  # changed sections applied now (see LIVE_CONFIG)
    restart_required: tuple[str, ...]  # changed sections kept as they were until a restart


def reread_config(path: Path, current: DaemonConfig,
                  overrides: dict[str, Any]) -> ConfigChange:
    """Read ``path`` again, with the command line's ``overrides``; raises ConfigError."""
    new = load_config(path).with_overrides(**overrides)
    changed = [f for f in DaemonConfig.model_fields if getattr(new, f) != getattr(current, f)]
    restart = tuple(f for f in changed if f not in LIVE_CONFIG)
    config = new.model_copy(update={f: getattr(current, f) for f in restart})
    return ConfigChange(config, tuple(f for f in changed if f in LIVE_CONFIG), restart)


def digest(policy: Policy) -> str:
    """The hash of the policy object's content, to notice it changing in memory."""
    return hashlib.sha256(policy.model_dump_json().encode()).hexdigest()
