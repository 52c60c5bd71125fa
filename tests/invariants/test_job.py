"""The shadow protocol: one job, one set of limits; the sandbox writes them, the shadow reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envelope.errors import LimitsError
from envelope.policy import SandboxPolicy
from envelope.sandbox import SandboxLimits
from invariants.errors import ProtocolError
from invariants.job import JOB_FORMAT, LIMIT_BOUNDS, ShadowJob, ShadowLimits
from tests.invariants.shadowkit import make_workspace

JOB = ShadowJob("m:f", "def f(x):\n    return x\n", "corpus.pkl", ("code",), repeats=4,
                examples=10, invariants=("m:pred",), bench_calls=2)


def test_a_job_survives_the_round_trip_with_absolute_paths() -> None:
    """What the sandbox writes, the shadow reads back field for field; paths become absolute."""
    job, nonce = ShadowJob.from_json(JOB.to_json("abc"))
    assert nonce == "abc"
    assert job.corpus_path == os.path.abspath("corpus.pkl")
    assert job.sys_path == (os.path.abspath("code"),)
    assert (job.target, job.candidate_source, job.repeats, job.examples, job.invariants,
            job.bench_calls) == ("m:f", JOB.candidate_source, 4, 10, ("m:pred",), 2)


@pytest.mark.parametrize("payload, message", [
    (b"not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (json.dumps({"nonce": "n", "target": "m:f"}).encode(), "format"),
    (json.dumps({"format": JOB_FORMAT, "target": "m:f"}).encode(), "nonce"),
    (json.dumps({"format": JOB_FORMAT, "nonce": "n", "target": "m:f"}).encode(), "incomplete"),
    (json.dumps({"format": JOB_FORMAT, "nonce": "n", "target": "m:f", "evil": 1}).encode(),
     "unknown"),
])
def test_a_malformed_job_is_refused_by_name(payload: bytes, message: str) -> None:
    """A job that is not exactly the protocol's is a ProtocolError saying what is wrong."""
    with pytest.raises(ProtocolError, match=message):
        ShadowJob.from_json(payload)


def test_limits_go_through_the_command_line_unchanged() -> None:
    """to_argv and the shadow's parser agree on every limit (no default re-stated on one side)."""
    import argparse

    limits = ShadowLimits(cpu_seconds=7, memory_mb=300, file_size_mb=2, open_files=32,
                          processes=3, result_bytes=5000)
    parser = argparse.ArgumentParser()
    ShadowLimits.add_arguments(parser)
    assert ShadowLimits.from_args(parser.parse_args(limits.to_argv())) == limits
    assert ShadowLimits.from_args(parser.parse_args([])) == ShadowLimits()


def test_the_policy_and_the_sandbox_share_one_set_of_defaults_and_bounds() -> None:
    """Every value the policy accepts builds sandbox limits, and the defaults are the same."""
    assert SandboxLimits.from_policy(SandboxPolicy()) == SandboxLimits()
    for name, (_, low, high) in LIMIT_BOUNDS.items():
        for value in (low, high):
            policy = SandboxPolicy(**{name: value})
            assert getattr(SandboxLimits.from_policy(policy), name) == value
        with pytest.raises(ValueError):
            SandboxPolicy(**{name: low - 1})
        with pytest.raises(LimitsError, match=name):
            SandboxLimits(**{name: low - 1})


def test_the_shadow_loads_no_daemon_code(tmp_path: Path) -> None:
    """The shadow, started as the jail starts it, runs a real job importing nothing of daemon."""
    workspace = make_workspace(tmp_path, "mod", "def f(xs):\n    return sum(xs)\n")
    corpus = workspace.record("f", [([1, 2],), ([3],)])
    job = ShadowJob("mod:f", "def f(xs):\n    t = 0\n    for x in xs:\n        t += x\n"
                    "    return t\n", str(corpus), (str(workspace.code),), repeats=3,
                    min_sample_seconds=0.001, examples=5)
    shadow_tmp = tmp_path / "shadow"
    shadow_tmp.mkdir()
    read_fd, write_fd = os.pipe()
    try:
        # -X importtime lists every module the process imports, to its end, on stderr
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-s", "-P", "-m", "invariants.shadow",
             "--result-fd", str(write_fd),
             "--tmpdir", str(shadow_tmp), "--mode", "full", *ShadowLimits().to_argv()],
            input=job.to_json("nonce"), capture_output=True, pass_fds=(write_fd,),
            env={"PATH": os.defpath, "PYTHONHASHSEED": "0", "LANG": "C.UTF-8"},
            timeout=120, check=False)
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        report = json.loads(pipe.read())
    assert report["status"] == "ok", report
    assert "benchmark" in report["checks"]
    imported = [line.rpartition("|")[2].strip() for line in proc.stderr.decode().splitlines()
                if line.startswith("import time:")]
    assert "invariants.shadow" in imported or "invariants.replay" in imported
    assert "demo" not in imported
    assert [m for m in imported if m == "daemon" or m.startswith("daemon.")] == []
