"""Tests for daemon.metrics: the catalogue follows domain events and reads live values."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from daemon import events as ev
from daemon.events import CycleOutcome
from daemon.metrics import Metrics
from envelope.policy import IsolationRequirements


def metrics() -> Metrics:
    return Metrics(CollectorRegistry(), wall=lambda: 5000.0)


def finished(outcome: CycleOutcome, **spent: dict[str, float]) -> ev.CycleFinished:
    return ev.CycleFinished("m:f", outcome, 2.0, 1, **spent)


def test_a_finished_cycle_counts_its_outcome_compute_and_tokens():
    """CycleFinished feeds the cycle counter, the compute and token counters and the timestamp."""
    m = metrics()
    m.on_event(finished(CycleOutcome.REJECTED,
                        compute_seconds={"record": 1.0, "propose": 2.0, "shadow": 3.0},
                        tokens={"prompt_tokens": 100.0, "completion_tokens": 40.0}))
    value = m.registry.get_sample_value
    assert value("selfmod_cycles_total", {"outcome": "rejected"}) == 1.0
    assert value("selfmod_compute_seconds_total", {"phase": "shadow"}) == 3.0
    assert value("selfmod_synthesis_tokens_total", {"kind": "prompt"}) == 100.0
    assert value("selfmod_synthesis_tokens_total", {"kind": "completion"}) == 40.0
    assert value("selfmod_last_cycle_timestamp_seconds") == 5000.0
    assert value("selfmod_improvements_per_compute_second") == 0.0


def test_known_label_values_exist_at_zero_before_any_event():
    """A dashboard sees every cycle outcome and each proposer's verdict series from the first
    scrape, at 0, instead of series that appear with the first candidate."""
    value = metrics().registry.get_sample_value
    for outcome in CycleOutcome:
        assert value("selfmod_cycles_total", {"outcome": outcome.value}) == 0.0
    for kind in ("rules", "llm"):
        for verdict in ("accepted", "rejected"):
            assert value("selfmod_candidates_total", {"origin": kind, "verdict": verdict}) == 0.0


def test_improvements_per_compute_second_counts_every_cycle_so_far():
    """The KPI gauge is swapped cycles over all synthesis seconds of the run."""
    m = metrics()
    m.on_event(finished(CycleOutcome.REJECTED, compute_seconds={"propose": 3.0}))
    m.on_event(finished(CycleOutcome.SWAPPED, compute_seconds={"propose": 1.0}))
    value = m.registry.get_sample_value("selfmod_improvements_per_compute_second")
    assert value == pytest.approx(1 / 4.0)


def test_a_cycles_spending_stays_out_of_the_audit_record():
    """compute_seconds and tokens reach subscribers but not the recorded body of the event."""
    event = finished(CycleOutcome.SWAPPED, compute_seconds={"propose": 1.0},
                     tokens={"prompt_tokens": 3.0})
    assert set(event.body()) == {"target", "outcome", "seconds", "candidates", "reason"}


def test_the_layers_the_policy_demands_are_read_at_each_scrape():
    """selfmod_isolation_required follows the policy in force: a reload that demands the
    mount namespace shows its two layers at 1 at the next scrape, the others at 0."""
    m = metrics()
    demanded: set[str] = set()
    m.watch(active_patches=lambda: 0, coverage=lambda: 1.0, halted=lambda: False,
            workload=lambda: None, required_layers=lambda: demanded)
    value = m.registry.get_sample_value
    layers = ("network_namespace", "mount_namespace", "readonly_filesystem")
    assert [value("selfmod_isolation_required", {"layer": layer}) for layer in layers] == \
        [0.0, 0.0, 0.0]
    demanded |= IsolationRequirements(mount_namespace=True).layers()
    assert [value("selfmod_isolation_required", {"layer": layer}) for layer in layers] == \
        [0.0, 1.0, 1.0]


def test_live_values_are_read_at_each_scrape():
    """watch makes active patches, coverage and the halt flag follow their sources."""
    m = metrics()
    live = {"patches": 2, "coverage": 0.5, "halted": False}
    m.watch(active_patches=lambda: int(live["patches"]),
            coverage=lambda: float(live["coverage"]), halted=lambda: bool(live["halted"]),
            workload=lambda: None)
    value = m.registry.get_sample_value
    assert value("selfmod_active_patches") == 2.0
    assert value("selfmod_verification_coverage_ratio") == 0.5
    assert value("selfmod_synthesis_halted") == 0.0
    live.update(patches=0, halted=True)
    assert value("selfmod_active_patches") == 0.0 and value("selfmod_synthesis_halted") == 1.0


def test_start_up_describes_the_run_and_its_isolation():
    """DaemonStarted sets the isolation gauges; describe_run the start time and build info."""
    m = metrics()
    m.on_event(ev.DaemonStarted(1, "/state", {"seccomp": True, "network_namespace": False}))
    m.describe_run(started_at=42.0, version="1.2", proposer="rules")
    value = m.registry.get_sample_value
    assert value("selfmod_isolation_available", {"layer": "seccomp"}) == 1.0
    assert value("selfmod_isolation_available", {"layer": "network_namespace"}) == 0.0
    assert value("selfmod_start_time_seconds") == 42.0
    assert value("selfmod_info", {"version": "1.2", "proposer": "rules"}) == 1.0
