"""The command line's manners: --version, and a reader that hangs up early."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version

SELFMOD = [sys.executable, "-m", "daemon.cli"]


def test_version_names_the_installed_distribution() -> None:
    """`selfmod --version` prints the installed version and exits 0."""
    out = subprocess.run([*SELFMOD, "--version"], capture_output=True, text=True, timeout=60,
                         check=True)
    assert out.stdout.strip() == f"selfmod {version('selfmod')}"


def test_a_closed_pipe_is_a_quiet_exit() -> None:
    """Output into a pipe whose reader has gone (`... | head`) ends with status 0, no traceback."""
    proc = subprocess.Popen([*SELFMOD, "envelope", "schema"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader hangs up before anything is written
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_every_reading_command_refuses_a_missing_state_dir_the_same_way(tmp_path) -> None:
    """status, history, diff, rollback, export and audit verify name where they looked."""
    commands = [["status"], ["history"], ["diff", "abcd"], ["rollback", "abcd"],
                ["export", "--out", str(tmp_path / "out")], ["audit", "verify"]]
    for command in commands:
        out = subprocess.run([*SELFMOD, *command], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60, check=False)
        assert out.returncode == 1, (command, out.stdout)
        assert f"no state directory at {tmp_path / '.selfmod'}" in out.stderr, command
        assert "--state-dir" in out.stderr and "SELFMOD_STATE_DIR" in out.stderr


def test_the_state_dir_can_come_from_the_environment(tmp_path) -> None:
    """SELFMOD_STATE_DIR points the commands at a state directory like --state-dir does."""
    state = tmp_path / "elsewhere"
    state.mkdir()
    out = subprocess.run([*SELFMOD, "audit", "verify", "--json"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=False,
                         env={**os.environ, "SELFMOD_STATE_DIR": str(state)})
    assert out.returncode == 0, out.stderr
    assert '"records": 0' in out.stdout


def test_history_is_a_table_that_holds_its_shape_and_says_why(tmp_path) -> None:
    """Long origins and 100x speedups keep the columns aligned; rejections show stage/reason."""
    from daemon.ledger import Ledger
    from daemon.synthesis.base import Candidate
    from snapshots import Snapshots

    state = tmp_path / "state"
    base = "0" * 64
    with Snapshots(state) as snapshots:
        ledger = Ledger.writer(snapshots)
        good = ledger.propose(Candidate("shop.pricing:total", "def total(xs):\n    return 1\n",
                                        "llm:Qwen/Qwen2.5-Coder-32B-Instruct-AWQ-long", base), base)
        ledger.activate("shop.pricing:total", good,
                        {"speedup": 123.456, "ci_low": 101.2, "ci_high": 140.9})
        bad = ledger.propose(Candidate("shop.pricing:total", "def total(xs):\n    return 2\n",
                                       "rules:manual-sum", base), base)
        ledger.reject(bad, "accept", "speedup_below_minimum", "1.01x, needs 1.05x")
    out = subprocess.run([*SELFMOD, "history", "--state-dir", str(state)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    header, *rows = out.splitlines()
    column = header.index("target")
    assert all(row[column:].startswith("shop.pricing:total") for row in rows), out
    assert "123x [101, 141]" in out and "llm:Qwen/Qwen2.5-Coder-32B-Instruct-AWQ-long" in out
    assert "accept/speedup_below_minimum" in out
    assert good[:12] in out and good[:13] not in out
    data = json.loads(subprocess.run([*SELFMOD, "history", "--json", "--state-dir", str(state)],
                                     capture_output=True, text=True, timeout=60,
                                     check=True).stdout)
    rejected = next(r for r in data if r["id"] == bad)
    assert (rejected["stage"], rejected["reason"], rejected["detail"]) == \
        ("accept", "speedup_below_minimum", "1.01x, needs 1.05x")


def test_history_and_diff_show_what_the_checks_ran(tmp_path) -> None:
    """A version's coverage is a history column; diff marks the lines no check ran."""
    from daemon.ledger import Ledger
    from daemon.synthesis.base import Candidate
    from snapshots import Snapshots

    state, target = tmp_path / "state", "shop.pricing:total"
    original = "def total(xs):\n    result = 0\n    for x in xs:\n        result += x\n" \
               "    return result\n"
    source = "def total(xs):\n    if len(xs) > 9:\n        return 0\n    return sum(xs)\n"
    coverage = {"measured": True, "lines": [3, 4], "branches": [1, 2], "missing_lines": [3],
                "missing_branches": [[2, 3]], "unproven": "line 3 and branch 2->3 ..."}
    with Snapshots(state) as snapshots:
        ledger = Ledger.writer(snapshots)
        base = snapshots.store.put_source(original)
        vid = ledger.propose(Candidate(target, source, "llm:m", base), base)
        ledger.activate(target, vid, {"speedup": 2.0, "ci_low": 1.5, "ci_high": 2.5,
                                      "coverage": coverage})
    history = subprocess.run([*SELFMOD, "history", "--state-dir", str(state)],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    assert "3/4 lines, 1/2 branches (unproven, allowed)" in history, history
    diff = subprocess.run([*SELFMOD, "diff", vid[:12], "--state-dir", str(state)],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    marked = [row for row in diff.splitlines() if row.endswith("never ran under the checks")]
    assert marked == ["+        return 0  # <- never ran under the checks"], diff
    data = json.loads(subprocess.run([*SELFMOD, "diff", vid[:12], "--json", "--state-dir",
                                      str(state)], capture_output=True, text=True, timeout=60,
                                     check=True).stdout)
    assert data["unexercised_lines"] == [3] and "never ran" not in data["diff"]


def test_max_cycles_refuses_a_negative_count() -> None:
    """`--max-cycles -1` is a usage error (exit 2) that says why."""
    out = subprocess.run([*SELFMOD, "run", "--max-cycles", "-1", "--app", "demo.workload:main"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2 and "negative" in out.stderr
