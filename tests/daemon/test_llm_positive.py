"""End-to-end: a model's good candidates go live, and a wrong one is corrected from its evidence.

The model is :class:`tests.daemon.llm.scripted.ScriptedModel` behind a loopback
HTTP server; everything else is real: the daemon process, the demo workload,
the recorder, the static gate, the jailed shadow, the statistics, the swap, the
canary and the audit log.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.live import LiveDaemon
from tests.daemon.llm.scripted import DATA_BLOCK, ScriptedModel, Step
from tests.daemon.llm.standin import StandIn

pytestmark = pytest.mark.slow

MODEL = "scripted-coder"
GOOD_VISITORS = '''\
def unique_visitors(records):
    """The distinct client ips, in order of first appearance."""
    return list(dict.fromkeys(rec[0] for rec in records))
'''
WRONG_SESSIONS = '''\
def dedupe_sessions(records):
    """The distinct (user, session) pairs, in order of first appearance."""
    return sorted(set((rec[1], rec[8]) for rec in records))
'''
GOOD_SESSIONS = '''\
def dedupe_sessions(records):
    """The distinct (user, session) pairs, in order of first appearance."""
    return list(dict.fromkeys((rec[1], rec[8]) for rec in records))
'''
SCOPE = ["demo.logstats:unique_visitors", "demo.logstats:dedupe_sessions"]
# two correct answers in one response: one copies the sorted list at every point, the
# other sorts once and indexes; the second is several times faster
SLOWER_CURVE = '''\
def latency_distribution(values):
    """The latency curve as (per_mille, latency) points; empty for no values."""
    if not values:
        return []
    once = sorted(values)
    curve = []
    for per_mille in DISTRIBUTION_PER_MILLE:
        ordered = list(once)
        rank = (per_mille * len(ordered) + 999) // 1000
        curve.append((per_mille, ordered[max(rank, 1) - 1]))
    return curve
'''
FASTER_CURVE = '''\
def latency_distribution(values):
    """The latency curve as (per_mille, latency) points; empty for no values."""
    if not values:
        return []
    ordered = sorted(values)
    n = len(ordered)
    return [(p, ordered[max((p * n + 999) // 1000, 1) - 1]) for p in DISTRIBUTION_PER_MILLE]
'''


def _metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.compile(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", re.M)
    return sum(float(m) for m in pattern.findall(text))


def _configure(tmp_path: Path, url: str, proposer: str, rules: bool, samples: int) -> Path:
    policy = tmp_path / "envelope.yaml"
    policy.write_text(
        "version: 1\nscope: {include: ['demo.logstats:*']}\n"
        f"proposers:\n  rules: {{enabled: {str(rules).lower()}}}\n"
        f"  llm: {{enabled: true, samples: {samples}, max_corrections: 1}}\n")
    policy.chmod(0o644)
    config = tmp_path / "selfmod.yaml"
    config.write_text(
        f"version: 1\npolicy: envelope.yaml\nproposer: {proposer}\n"
        # a cold target (unique_visitors) is ranked in seconds, not minutes
        "profiler: {hz: 200}\ncycle: {min_samples: 20}\n"
        "workload: {app: 'demo.workload:main', options: {workers: 2, seed: 1234, "
        "oracle_every: 5}}\n"
        f"llm: {{base_url: '{url}', model: '{MODEL}', max_tokens: 800, samples: {samples}, "
        "timeout_seconds: 30}\n")
    return config


def _run_until_swapped(config: Path, state: Path, cwd: Path, targets: list[str],
                       report: Path) -> tuple[LiveDaemon, str]:
    """Start the daemon, wait until every target in ``targets`` was swapped, scrape, stop."""
    daemon = LiveDaemon(["--config", str(config), "--state-dir", str(state), "--metrics-port",
                         "0", "--scope", *targets, "--report", str(report)], cwd)
    try:
        url = daemon.wait_for("metrics_listening", 60)["url"]
        for target in targets:
            daemon.wait_for("cycle_finished", 300,
                            where=lambda e, t=target: e["target"] == t
                            and e["outcome"] == "swapped")
        with urllib.request.urlopen(url, timeout=10) as response:
            metrics = response.read().decode()
    finally:
        code = daemon.stop(30)
    assert code == 0, daemon.tail()
    return daemon, metrics


def _history(state: Path, cwd: Path) -> list[dict[str, Any]]:
    out = subprocess.run([sys.executable, "-m", "daemon.cli", "history", "--json",
                          "--state-dir", str(state)], cwd=cwd, capture_output=True, text=True,
                         check=True, timeout=60)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.timeout(600)
def test_a_good_candidate_goes_live_and_a_wrong_one_is_corrected_from_its_evidence(tmp_path):
    """The model's right answer is swapped at once; its wrong one is rejected, the evidence
    goes back inside data blocks, and the corrected version goes live and is counted."""
    model = ScriptedModel({
        "unique_visitors": [Step((GOOD_VISITORS,))],
        # the correction is served only once the request shows the rejected candidate
        "dedupe_sessions": [Step((WRONG_SESSIONS,)),
                            Step((GOOD_SESSIONS,), needs=("sorted(set(",))],
    }, name=MODEL)
    state, report = tmp_path / "state", tmp_path / "report.json"
    with StandIn(model) as server:
        config = _configure(tmp_path, server.url, "llm", rules=False, samples=1)
        daemon, metrics = _run_until_swapped(config, state, tmp_path, SCOPE, report)
    # each went live under the canary
    assert {e["target"] for e in daemon.events("canary_passed")} >= set(SCOPE)

    active = {v["target"]: v for v in _history(state, tmp_path) if v["status"] == "active"}
    assert set(active) == set(SCOPE)
    assert all(v["origin"] == f"llm:{MODEL}" for v in active.values())

    # the wrong first answer was rejected by behaviour, with evidence
    audit = [json.loads(line) for line in (state / "audit.log").read_text().splitlines()]
    rejected = [r["body"] for r in audit if r["kind"] == "rejected"
                and r["body"]["target"] == "demo.logstats:dedupe_sessions"
                and r["body"]["stage"] == "shadow"]
    assert len(rejected) == 1, rejected
    evidence = rejected[0]["detail"]
    assert evidence

    # what the model was told: first the bare request, then the rejection's evidence,
    # every piece of it inside a data block
    asked = model.for_target("dedupe_sessions")[:2]  # later ones re-check the live version
    assert [r.rejections for r in asked] == [0, 1]
    assert asked[1].served == 1
    feedback = "\n".join(asked[1].feedback_blocks())
    assert "sorted(set(" in feedback
    probe = evidence.splitlines()[0][:60]
    assert probe in feedback, (probe, feedback)
    outside = DATA_BLOCK.sub("", asked[1].user)
    assert probe not in outside and "sorted(set(" not in outside
    assert model.for_target("unique_visitors")[0].rejections == 0

    # counted: one correction that ended accepted, tokens and seconds in the report
    assert _metric(metrics, "selfmod_self_corrections_total", '{result="accepted"}') >= 1
    assert _metric(metrics, "selfmod_candidates_total",
                   '{origin="llm",verdict="accepted"}') >= 2
    run = json.loads(report.read_text())
    assert run["compute"]["tokens"] > 0
    model_cycles = [c for c in run["cycles"] if c["target"] in SCOPE and c["tokens"]]
    assert model_cycles and all(c["compute_seconds"]["propose"] > 0 for c in model_cycles)
    assert run["workload"]["oracle_mismatches"] == 0
    swapped = [c for c in run["cycles"] if c["outcome"] == "swapped"]
    assert {c["target"] for c in swapped} == set(SCOPE)


@pytest.mark.timeout(600)
def test_rules_and_model_together_the_fastest_proven_candidate_goes_live(tmp_path):
    """With [rules, llm], every candidate of a cycle is judged and the one with the best
    proven speedup goes live; of the model's two correct choices the slower one never does."""
    model = ScriptedModel({"latency_distribution": [Step((SLOWER_CURVE, FASTER_CURVE))]},
                          name=MODEL)
    target = "demo.logstats:latency_distribution"
    state, report = tmp_path / "state", tmp_path / "report.json"
    with StandIn(model) as server:
        config = _configure(tmp_path, server.url, "[rules, llm]", rules=True, samples=2)
        _run_until_swapped(config, state, tmp_path, [target], report)

    assert model.for_target("latency_distribution"), "the model was never asked"
    audit = [json.loads(line) for line in (state / "audit.log").read_text().splitlines()]
    accepted = {r["body"]["version"]: r["body"] for r in audit if r["kind"] == "accepted"}
    origins = {body["origin"].partition(":")[0] for body in accepted.values()}
    assert origins == {"rules", "llm"}, accepted  # both tiers had a correct, faster candidate
    [live] = [v for v in _history(state, tmp_path)
              if v["status"] == "active" and v["target"] == target]
    best = max(accepted.values(), key=lambda body: body["ci_low"])
    assert live["id"] == best["version"]
    slower = next(b for b in accepted.values()
                  if b["origin"].startswith("llm:") and b["version"] != live["id"]
                  and b["ci_low"] < max(a["ci_low"] for a in accepted.values()))
    outperformed = [r["body"] for r in audit if r["kind"] == "rejected"
                    and r["body"]["version"] == slower["version"]]
    assert outperformed and outperformed[0]["reason"] == "outperformed", outperformed
