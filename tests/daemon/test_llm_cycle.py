"""End-to-end: daemon cycles driven through a real vLLM server (tiny random-weight model)."""

import json
import re
import signal
import urllib.request

import pytest

from tests.daemon.live import LiveDaemon

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

TARGET = "demo.logstats:dedupe_sessions"


def _metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.compile(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", re.M)
    return sum(float(m) for m in pattern.findall(text))


def test_model_cycles_reach_vllm_and_its_noise_is_rejected_with_reasons(vllm, tmp_path):
    """Requests reach vLLM with structured output; its noise is rejected, corrected, recorded."""
    (tmp_path / "envelope.yaml").write_text(
        "version: 7\nproposers:\n  rules: {enabled: false}\n"
        "  llm: {enabled: true, samples: 2, max_corrections: 1}\n")
    (tmp_path / "envelope.yaml").chmod(0o644)
    (tmp_path / "selfmod.yaml").write_text(
        "version: 1\npolicy: envelope.yaml\nproposer: llm\n"
        "profiler: {hz: 200}\ncycle: {min_samples: 20}\n"
        f"llm: {{base_url: '{vllm.base_url}', model: '{vllm.model}', max_tokens: 200, "
        "samples: 2, timeout_seconds: 60}\n")
    state = tmp_path / "state"
    daemon = LiveDaemon(["--config", str(tmp_path / "selfmod.yaml"), "--state-dir", str(state),
                     "--metrics-port", "0", "--scope", TARGET, "--report",
                     str(tmp_path / "report.json")], tmp_path)
    url = daemon.wait_for("metrics_listening", 60)["url"]
    finished = daemon.wait_for("cycle_finished", 240)
    with urllib.request.urlopen(url, timeout=10) as response:
        metrics = response.read().decode()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.finish(30) == 0, "".join(daemon.raw[-30:])

    assert finished["target"] == TARGET
    assert _metric(metrics, "selfmod_llm_requests_total", '{result="ok"}') >= 2
    assert _metric(metrics, "selfmod_llm_tokens_total", '{kind="completion"}') > 0
    assert _metric(metrics, "selfmod_self_corrections_total", '{result="rejected"}') >= 1

    records = [json.loads(line) for line in (state / "audit.log").read_text().splitlines()]
    rejected = [r["body"] for r in records if r["kind"] == "rejected"]
    assert rejected, "the model's noise produced no rejection records"
    assert all(r["origin"] == f"llm:{vllm.model}" and r["stage"] and r["reason"]
               for r in rejected)
    # Structured output: the samples are JSON of the schema, so nothing fails as bad JSON.
    assert {r["reason"] for r in rejected} - {"bad_json"}
    assert any(r["kind"] == "self_correction" for r in records)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["active"] == {}  # nothing unvalidated was installed
    assert report["compute"]["tokens"] > 0
    assert report["workload"]["oracle_mismatches"] == 0
    assert report["workload"]["throughput_after"] > 0
