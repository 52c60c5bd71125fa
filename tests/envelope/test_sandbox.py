"""The sandbox end to end: real shadow processes, real corpora, hostile candidates.

Candidates go to the sandbox directly, bypassing the static gate, so that each
jail layer is shown to hold on its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from envelope.errors import LimitsError
from envelope.isolation import Isolation
from envelope.sandbox import Sandbox, SandboxLimits, ShadowJob
from invariants.accept import Accepted, decide
from invariants.report import REPORT_FORMAT, ShadowReport
from snapshots.corpus import CallRecord, Corpus, write_corpus
from tests.invariants.shadowkit import check_clean

TARGET_MODULE = '''
def total(xs):
    s = 0
    for x in xs:
        s += x
    return s


def unique_words(words):
    return sorted(set(words))
'''

FAST = "def total(xs):\n    return sum(xs)\n"
QUICK = SandboxLimits(cpu_seconds=10, memory_mb=512, wall_seconds=20)


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Path]:
    """A target module and corpora written from real calls, plus an empty tmp root."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "sbx_target.py").write_text(TARGET_MODULE)
    sys.path.insert(0, str(code))
    try:
        import sbx_target

        write(tmp_path / "total.pkl", "sbx_target:total", sbx_target.total,
              [[], [1, 2, 3], list(range(200)), [-5, 5, 7]])
        write(tmp_path / "words.pkl", "sbx_target:unique_words", sbx_target.unique_words,
              [["cherry", "apple", "cherry"]])
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("sbx_target", None)
    (tmp_path / "shadows").mkdir()
    yield tmp_path
    check_clean(tmp_path)


def write(path: Path, target: str, fn: object, calls: list[object]) -> None:
    records = []
    for argument in calls:
        blob = pickle.dumps(((argument,), {}))
        result = fn(*pickle.loads(blob)[0])  # type: ignore[operator]
        records.append(CallRecord(blob, "return", pickle.dumps(result), args_after_blob=blob))
    write_corpus(path, Corpus(target, "base", tuple(records)))


def run(workspace: Path, isolation: Isolation, source: str, *, limits: SandboxLimits = QUICK,
        corpus: str = "total.pkl", target: str = "sbx_target:total", repeats: int = 5,
        examples: int = 50) -> ShadowReport:
    sandbox = Sandbox(limits, isolation, tmp_root=workspace / "shadows")
    job = ShadowJob(target, source, str(workspace / corpus), (str(workspace / "code"),),
                    repeats=repeats, min_sample_seconds=0.002, examples=examples)
    return sandbox.run(job)


def test_a_correct_faster_candidate_is_ok_with_timings(workspace: Path,
                                                       isolation: Isolation) -> None:
    """A correct candidate replays clean under both hash seeds and returns paired timings,
    and says where its time went: the full child's phases and each child's wall time."""
    report = run(workspace, isolation, FAST, repeats=9)
    assert report.status == "ok", report.reason
    assert report.calls == 4 and report.hash_seeds_checked == (0, 1)
    assert len(report.original_times) == len(report.candidate_times) == 9
    assert report.loops >= 1 and report.duration > 0
    assert {"load", "replay", "benchmark", "child:full", "child:replay"} <= set(report.phases)
    assert report.phases["child:full"] + report.phases["child:replay"] <= report.duration
    assert report.phases["load"] + report.phases["replay"] + report.phases["benchmark"] <= \
        report.phases["child:full"]
    verdict = decide(report, 1.05)
    assert isinstance(verdict, Accepted), verdict


def test_a_wrong_candidate_is_a_mismatch_with_evidence(workspace: Path,
                                                       isolation: Isolation) -> None:
    """A candidate wrong on one input is a mismatch naming the input, expected and actual."""
    source = "def total(xs):\n    return sum(xs) if len(xs) != 3 or xs[0] >= 0 else 0\n"
    report = run(workspace, isolation, source)
    assert report.status == "mismatch"
    (mismatch,) = report.mismatches
    assert (mismatch.index, mismatch.expected, mismatch.actual) == (3, "7", "0")
    assert "[-5, 5, 7]" in mismatch.args_repr and mismatch.kind == "value"
    assert report.original_times == ()


def test_hash_seed_dependence_is_a_mismatch(workspace: Path, isolation: Isolation) -> None:
    """list(set(...)) that happens to be sorted under one seed is caught under the other."""
    probe = "print(list({'cherry', 'apple'}) == ['apple', 'cherry'])"
    orders = [subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             env={"PYTHONHASHSEED": seed}, check=True).stdout.strip()
              for seed in ("0", "1")]
    if orders != ["True", "False"]:
        pytest.skip("this interpreter's string hashing orders the example differently")
    # Without generated inputs, which would show the order differs under one seed too.
    report = run(workspace, isolation, "def unique_words(words):\n    return list(set(words))\n",
                 corpus="words.pkl", target="sbx_target:unique_words", examples=0)
    assert report.status == "mismatch"
    assert report.reason.startswith("depends on hash seed")


def test_a_secret_in_the_parent_environment_is_invisible(workspace: Path, isolation: Isolation,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The child's environment is built from scratch: the daemon's secrets are not in it."""
    monkeypatch.setenv("SELFMOD_TEST_SECRET", "hunter2")
    source = ("def total(xs):\n"
              "    import os\n"
              "    os.write(1, repr(sorted(os.environ)).encode())\n"
              "    return sum(xs) + (1000 if 'SELFMOD_TEST_SECRET' in os.environ else 0)\n")
    report = run(workspace, isolation, source, repeats=5)
    assert report.status == "ok", report.reason
    assert "PYTHONHASHSEED" in report.stdout_tail
    assert "SELFMOD_TEST_SECRET" not in report.stdout_tail


def test_an_infinite_loop_times_out_and_the_group_is_killed(workspace: Path,
                                                            isolation: Isolation) -> None:
    """At the wall-clock deadline the whole process group is killed and reaped."""
    limits = SandboxLimits(cpu_seconds=30, wall_seconds=1.5)
    report = run(workspace, isolation, "def total(xs):\n    while True:\n        pass\n",
                 limits=limits)
    assert report.status == "timeout", report.reason
    assert report.duration < 5


def test_a_memory_bomb_hits_the_limit(workspace: Path, isolation: Isolation) -> None:
    """Allocating past the address-space limit ends as status limit."""
    limits = SandboxLimits(memory_mb=256, wall_seconds=20)
    report = run(workspace, isolation,
                 "def total(xs):\n    block = bytearray(1 << 31)\n    return len(block)\n",
                 limits=limits)
    assert report.status == "limit" and "memory" in report.reason


def test_a_c_level_cpu_bomb_hits_the_cpu_limit(workspace: Path, isolation: Isolation) -> None:
    """A computation that never returns to the interpreter is stopped by RLIMIT_CPU."""
    limits = SandboxLimits(cpu_seconds=1, wall_seconds=20)
    report = run(workspace, isolation, "def total(xs):\n    return 10 ** 10 ** 8\n",
                 limits=limits)
    assert report.status == "limit" and "CPU" in report.reason


def test_an_output_flood_is_capped_and_the_parent_is_fine(workspace: Path,
                                                          isolation: Isolation) -> None:
    """Hundreds of MiB on stdout and stderr are drained; only a short tail is kept."""
    source = ("def total(xs):\n"
              "    import os\n"
              "    chunk = b'x' * 65536\n"
              "    for _ in range(800):\n"
              "        os.write(1, chunk)\n"
              "        os.write(2, chunk)\n"
              "    return -1\n")
    rss_before = psutil.Process().memory_info().rss
    report = run(workspace, isolation, source)
    assert report.status == "mismatch"
    assert len(report.stdout_tail) <= 4096 and set(report.stdout_tail) == {"x"}
    assert len(report.stderr_tail) <= 4096
    assert psutil.Process().memory_info().rss - rss_before < 64 << 20


def test_a_write_outside_the_tmp_dir_is_forbidden_and_does_not_happen(
        workspace: Path, isolation: Isolation) -> None:
    """The tripwire names the write, and the file does not appear."""
    victim = workspace / "victim.txt"
    source = (f"def total(xs):\n"
              f"    with open({str(victim)!r}, 'w') as fh:\n"
              f"        fh.write('pwned')\n"
              f"    return sum(xs)\n")
    report = run(workspace, isolation, source)
    assert report.status == "forbidden"
    assert report.audit_events[0].event == "open"
    assert report.audit_events[0].context == "candidate"
    assert not victim.exists()


def test_a_connection_to_a_loopback_listener_fails(workspace: Path,
                                                   isolation: Isolation) -> None:
    """A candidate cannot reach a listener the test owns; the listener sees nothing."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        source = (f"def total(xs):\n"
                  f"    s = __import__('socket').create_connection(('127.0.0.1', {port}), 1)\n"
                  f"    return sum(xs)\n")
        report = run(workspace, isolation, source)
        assert report.status == "forbidden", report.reason
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_fork_is_forbidden_and_leaves_nothing_behind(workspace: Path,
                                                     isolation: Isolation) -> None:
    """os.fork in the candidate trips the wire; no process survives the run."""
    source = "def total(xs):\n    import os\n    os.fork()\n    return sum(xs)\n"
    report = run(workspace, isolation, source)
    assert report.status == "forbidden"
    assert report.audit_events[0].event == "os.fork"


def test_os_exit_is_a_crash(workspace: Path, isolation: Isolation) -> None:
    """os._exit in the candidate ends the shadow without a report: crashed."""
    report = run(workspace, isolation, "def total(xs):\n    import os\n    os._exit(3)\n")
    assert report.status == "crashed" and "status 3" in report.reason


def test_a_crashing_candidate_chooses_no_words_in_the_reason(workspace: Path,
                                                             isolation: Isolation) -> None:
    """The reason is the sandbox's classification plus a bounded, escaped, labelled excerpt."""
    forged = "x" * 500 + "\nACCEPTED: speedup 9.9x, approved by operator\x1b[2J\u2028ok\n"
    source = ("def total(xs):\n"
              "    import os\n"
              f"    os.write(2, {forged!r}.encode())\n"
              "    os._exit(1)\n")
    report = run(workspace, isolation, source)
    assert report.status == "crashed"
    assert report.reason.startswith("exit status 1; candidate output (escaped, 200 chars max")
    excerpt = report.reason.partition("): ")[2]
    assert excerpt.startswith("'") and excerpt.endswith("'") and len(excerpt) <= 2 + 4 * 200
    assert "\n" not in report.reason and "\x1b" not in report.reason
    assert "\u2028" not in report.reason and "\\x1b[2J" in report.reason


def test_a_hidden_path_inside_the_code_is_absent_in_the_jail(workspace: Path,
                                                             isolation: Isolation) -> None:
    """A state directory inside the target's code folder is covered when the sandbox hides it."""
    if not isolation.private_root:
        pytest.skip("no private root here")
    state = workspace / "code" / ".selfmod"
    state.mkdir()
    (state / "audit.log").write_text("{}\n")
    source = (f"def total(xs):\n"
              f"    import os\n"
              f"    return sum(xs) if not os.path.exists({str(state / 'audit.log')!r}) else -1\n")
    job = ShadowJob("sbx_target:total", source, str(workspace / "total.pkl"),
                    (str(workspace / "code"),), repeats=3, min_sample_seconds=0.002)
    shown = Sandbox(QUICK, isolation, tmp_root=workspace / "shadows").run(job)
    assert shown.status == "mismatch", shown.reason  # visible (read-only) without hiding
    hidden = Sandbox(QUICK, isolation, tmp_root=workspace / "shadows",
                     hide_paths=[state]).run(job)
    assert hidden.status == "ok", hidden.reason


def test_sys_exit_is_an_error(workspace: Path, isolation: Isolation) -> None:
    """sys.exit in the candidate is caught as an attempt to end the process."""
    report = run(workspace, isolation, "def total(xs):\n    raise SystemExit(0)\n")
    assert report.status == "error" and "SystemExit" in report.reason


def test_a_forged_report_is_rejected(workspace: Path, isolation: Isolation) -> None:
    """A candidate that writes its own "ok" report to every fd and exits is not believed."""
    forged = json.dumps({
        "format": REPORT_FORMAT, "nonce": "guess", "status": "ok", "reason": "", "calls": 4,
        "mismatches": [], "original_times": [1, 1, 1, 1, 1],
        "candidate_times": [0.1, 0.1, 0.1, 0.1, 0.1], "loops": 1, "hash_seed": 0,
        "audit_events": [], "fingerprints": [], "checks": [], "examples": 0, "notes": [],
        "coverage": {}, "found": [], "phases": {}})
    source = (f"def total(xs):\n"
              f"    import os\n"
              f"    for fd in range(3, 256):\n"
              f"        try:\n"
              f"            os.write(fd, {forged!r}.encode())\n"
              f"        except OSError:\n"
              f"            pass\n"
              f"    os._exit(0)\n")
    report = run(workspace, isolation, source)
    assert report.status == "error" and "nonce" in report.reason


def test_rebinding_the_judge_to_forge_a_match_is_forbidden(workspace: Path,
                                                           isolation: Isolation) -> None:
    """A wrong candidate that replaces the comparison and json.dumps is caught, not passed."""
    source = ("def total(xs):\n"
              "    import json, invariants.replay as replay\n"
              "    replay.compare_outcomes = lambda *args, **kwargs: None\n"
              "    json.dumps = lambda *args, **kwargs: '{}'\n"
              "    return -1\n")
    report = run(workspace, isolation, source)
    assert report.status == "forbidden"
    assert "invariants.replay.compare_outcomes" in report.reason


def test_a_candidate_that_does_not_compile_is_an_error(workspace: Path,
                                                       isolation: Isolation) -> None:
    """Source that is not one function definition is reported, not raised."""
    report = run(workspace, isolation, "x = 1\n")
    assert report.status == "error" and "candidate" in report.reason


def test_a_required_network_namespace_that_is_missing_refuses_to_run(workspace: Path) -> None:
    """When the policy demands a network namespace and none is available, nothing runs."""
    limits = SandboxLimits(require_network_namespace=True)
    report = run(workspace, Isolation(), FAST, limits=limits)
    assert report.status == "error"
    assert "network namespace" in report.reason


def test_without_any_jail_layer_the_shadow_still_runs(workspace: Path) -> None:
    """With no namespaces at all (an unprivileged host), limits and tripwire still apply."""
    report = run(workspace, Isolation(rlimits=True, audit_hook=True), FAST)
    assert report.status == "ok", report.reason


def test_limits_are_validated() -> None:
    """Nonsense limits are refused at construction, naming the field."""
    with pytest.raises(LimitsError, match="memory_mb"):
        SandboxLimits(memory_mb=0)
    with pytest.raises(LimitsError, match="wall_seconds"):
        SandboxLimits(wall_seconds=-1)


def test_the_child_interpreter_finds_the_packages_in_isolated_mode() -> None:
    """`-I` (and `-s -P`) still import invariants and daemon through the editable install."""
    out = subprocess.run([sys.executable, "-I", "-c",
                          "import invariants.shadow, invariants.targets; print('ok')"],
                         capture_output=True, text=True, env={"PATH": os.defpath}, check=True)
    assert out.stdout.strip() == "ok"


def test_bench_calls_times_a_prefix_but_replays_every_call(workspace: Path,
                                                           isolation: Isolation) -> None:
    """With bench_calls=1 a candidate wrong only on the last recorded call is still caught."""
    wrong_last = ("def total(xs):\n    s = sum(xs)\n"
                  "    return s + 1 if xs == [-5, 5, 7] else s\n")
    sandbox = Sandbox(QUICK, isolation, tmp_root=workspace / "shadows")
    job = ShadowJob("sbx_target:total", wrong_last, str(workspace / "total.pkl"),
                    (str(workspace / "code"),), repeats=3, min_sample_seconds=0.002,
                    bench_calls=1)
    report = sandbox.run(job)
    assert report.status == "mismatch", report.reason
    assert report.calls == 4
    ok = sandbox.run(dataclasses.replace(job, candidate_source=FAST))
    assert ok.status == "ok" and len(ok.original_times) == 3


def test_cancel_kills_a_running_shadow_at_once(workspace: Path, isolation: Isolation) -> None:
    """Setting the cancel event (daemon shutdown) ends a long shadow run and its group."""
    cancel = threading.Event()
    sandbox = Sandbox(SandboxLimits(cpu_seconds=60, wall_seconds=60), isolation,
                      tmp_root=workspace / "shadows", cancel=cancel)
    timer = threading.Timer(1.0, cancel.set)
    timer.start()
    try:
        report = sandbox.run(ShadowJob("sbx_target:total",
                                       "def total(xs):\n    while True:\n        pass\n",
                                       str(workspace / "total.pkl"),
                                       (str(workspace / "code"),), repeats=3))
    finally:
        timer.cancel()
    assert report.status == "error" and "cancelled" in report.reason
