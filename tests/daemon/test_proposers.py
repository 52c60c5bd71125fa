"""Tests for daemon.proposers: the proposers and the jail a cycle gets, from config and policy."""

from __future__ import annotations

import threading

from daemon.config import DaemonConfig
from daemon.proposers import Proposers, make_sandbox
from daemon.synthesis.base import DetailedProposer, self_correcting
from daemon.synthesis.llm import LLMProposer
from daemon.synthesis.rules import RulesProposer
from envelope.isolation import probe_isolation
from envelope.policy import DEFAULT_POLICY, Policy, SandboxPolicy
from envelope.policy import Proposers as ProposerSwitches


def with_switches(*, rules: bool = True, llm: bool = False) -> Policy:
    switches = ProposerSwitches.model_validate({"rules": {"enabled": rules},
                                                "llm": {"enabled": llm}})
    return DEFAULT_POLICY.model_copy(update={"proposers": switches})


def test_the_config_names_the_proposers_and_the_policy_switches_them():
    """rules in the config and the policy gives the rules; the policy can switch them off."""
    proposers = Proposers()
    config = DaemonConfig(proposer="rules")
    (only,) = proposers.for_cycle(config, DEFAULT_POLICY)
    assert isinstance(only, RulesProposer) and not proposers.uses_llm
    assert proposers.for_cycle(config, with_switches(rules=False)) == []


def test_the_model_proposer_is_built_once_until_forgotten():
    """llm in the config builds the model proposer once; forget_llm makes the next cycle rebuild."""
    proposers = Proposers()
    config = DaemonConfig(proposer="both")
    first = proposers.for_cycle(config, DEFAULT_POLICY)
    assert [type(p) for p in first] == [RulesProposer, LLMProposer] and proposers.uses_llm
    assert proposers.for_cycle(config, DEFAULT_POLICY)[1] is first[1]
    proposers.forget_llm()
    assert not proposers.uses_llm
    assert proposers.for_cycle(config, DEFAULT_POLICY)[1] is not first[1]


def test_prepare_builds_the_model_proposer_before_any_cycle_and_only_when_asked():
    """The daemon prepares before the app starts: the model client (and the SDK it imports)
    is built then when the config or the policy asks for it, and not for rules alone."""
    rules_only = Proposers()
    rules_only.prepare(DaemonConfig(proposer="rules"), DEFAULT_POLICY)
    assert not rules_only.uses_llm
    for config, policy in ((DaemonConfig(proposer="llm"), DEFAULT_POLICY),
                           (DaemonConfig(proposer="rules"), with_switches(llm=True))):
        proposers = Proposers()
        proposers.prepare(config, policy)
        assert proposers.uses_llm


def test_the_policy_can_enable_the_model_proposer_on_its_own():
    """proposers.llm.enabled adds the model proposer to a rules-only config."""
    proposers = Proposers()
    chosen = proposers.for_cycle(DaemonConfig(proposer="rules"), with_switches(llm=True))
    assert [type(p) for p in chosen] == [RulesProposer, LLMProposer]


def test_only_the_model_proposer_declares_detail_and_self_correction():
    """The cycle asks the model proposer for details and corrections, never the rules."""
    rules, llm = Proposers().for_cycle(DaemonConfig(proposer="both"), DEFAULT_POLICY)
    assert isinstance(llm, DetailedProposer) and self_correcting(llm)
    assert not isinstance(rules, DetailedProposer) and not self_correcting(rules)


def test_the_sandbox_takes_the_policys_limits():
    """make_sandbox carries the policy's sandbox section into the jail's limits."""
    section = SandboxPolicy.model_validate({"memory_mb": 300, "wall_seconds": 45,
                                            "require": {"network_namespace": True}})
    policy = DEFAULT_POLICY.model_copy(update={"sandbox": section})
    sandbox = make_sandbox(policy, probe_isolation(), threading.Event())
    assert (sandbox.limits.memory_mb, sandbox.limits.wall_seconds) == (300, 45)
    assert sandbox.limits.require_network_namespace
