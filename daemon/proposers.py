"""What a cycle works with, built from the config and the policy: proposers and the sandbox.

:class:`Proposers` keeps the rules proposer and, once needed, the model
proposer with its client (rebuilt after a config reload changes ``llm`` or
``proposer``); :func:`make_sandbox` turns the policy's ``sandbox`` section into
the jail a shadow run gets.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daemon.config import DaemonConfig
from daemon.metrics import Metrics
from daemon.synthesis.base import Proposer
from envelope.isolation import Isolation
from envelope.policy import Policy
from envelope.sandbox import Sandbox, SandboxLimits


class Proposers:
    """The proposers a cycle asks, as the config names them and the policy allows."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        from daemon.synthesis.rules import RulesProposer

        self._metrics = metrics
        self._rules: Proposer = RulesProposer()
        self._llm: Proposer | None = None

    @property
    def uses_llm(self) -> bool:
        """Whether the model proposer has been built (its requests bound a cycle's stages)."""
        return self._llm is not None

    def prepare(self, config: DaemonConfig, policy: Policy) -> None:
        """Build now what the first cycle will ask, before the app's threads start.

        Importing the model client means importing the ``openai`` SDK, hundreds of
        modules; done on the first cycle, with the app's CPU-bound threads taking
        the GIL back after every file read, it took 28 s on the demo here and over
        four minutes on a loaded machine (0.4 s in a quiet process).
        """
        self.for_cycle(config, policy)

    def forget_llm(self) -> None:
        """Drop the model proposer; the next cycle builds it with the settings then in force."""
        self._llm = None

    def for_cycle(self, config: DaemonConfig, policy: Policy) -> list[Proposer]:
        """The configured proposers, less those the policy switches off (or plus llm it enables)."""
        switches = policy.proposers
        proposers: list[Proposer] = []
        if config.proposer in ("rules", "both") and switches.rules.enabled:
            proposers.append(self._rules)
        if config.proposer in ("llm", "both") or switches.llm.enabled:
            proposers.append(self._llm_proposer(config, policy))
        return proposers

    def _llm_proposer(self, config: DaemonConfig, policy: Policy) -> Proposer:
        if self._llm is None:
            from daemon.synthesis.llm import LLMProposer

            llm = config.llm
            self._llm = LLMProposer(make_llm_client(config, self._metrics), llm.model,
                                    samples=policy.proposers.llm.samples,
                                    max_tokens=llm.max_tokens, temperature=llm.temperature)
        return self._llm


def make_llm_client(config: DaemonConfig, metrics: Metrics | None = None) -> Any:
    """The model server client for ``config.llm`` (the API key is read, never logged)."""
    from daemon.synthesis.llm import ClientConfig, LLMClient

    llm = config.llm
    return LLMClient(ClientConfig(base_url=llm.base_url, model=llm.model,
                                  api_key_env=llm.api_key_env or "",
                                  api_key_file=str(llm.api_key_file or ""),
                                  read_timeout=llm.timeout_seconds), metrics=metrics)


def make_sandbox(policy: Policy, isolation: Isolation, stop: threading.Event,
                 hide: Sequence[Path] = ()) -> Sandbox:
    """The jail for one shadow run under ``policy``; ``stop`` cancels a run in flight.

    ``hide`` are paths the shadow must not see even where its code lives beside
    them (the daemon passes its state directory: a checkout keeps it next to the app).
    """
    return Sandbox(SandboxLimits.from_policy(policy.sandbox), isolation, cancel=stop,
                   hide_paths=hide)
