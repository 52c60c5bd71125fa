"""Tests of envelope/watcher.py with a real directory and a real watchdog observer."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from envelope.errors import PolicyError
from envelope.policy import Policy, load_policy
from envelope.watcher import PolicyWatcher

DEBOUNCE = 0.05
VALID = "version: 1\nacceptance:\n  min_speedup: 1.05\n"


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the deadline")
        time.sleep(0.01)


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def replace_by_rename(path: Path, text: str) -> None:
    """What editors and config tools do: write a sibling, then rename it over the file."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    temp.chmod(0o644)
    os.replace(temp, path)


@dataclass
class Calls:
    loaded: list[Policy] = field(default_factory=list)
    errors: list[PolicyError] = field(default_factory=list)


@dataclass
class Watched:
    path: Path
    watcher: PolicyWatcher
    calls: Calls

    def settle(self, before: int) -> None:
        """Wait until the watcher has finished a load after ``before`` attempts."""
        wait_for(lambda: self.watcher.attempts > before)


@pytest.fixture
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    wait_for(lambda: not [t for t in threading.enumerate() if t not in before and t.is_alive()],
             timeout=5.0)


@pytest.fixture
def watched(tmp_path: Path, no_leaked_threads: None) -> Iterator[Watched]:
    path = tmp_path / "envelope.yaml"
    write(path, VALID)
    path.chmod(0o644)
    calls = Calls()
    watcher = PolicyWatcher(path, calls.loaded.append, calls.errors.append, debounce=DEBOUNCE)
    watcher.start()
    try:
        yield Watched(path, watcher, calls)
    finally:
        watcher.stop()


def test_start_loads_the_file(watched: Watched) -> None:
    """Starting without a policy loads the file once and reports it."""
    assert [p.version for p in watched.calls.loaded] == [1]
    assert watched.watcher.current is watched.calls.loaded[0]


def test_start_with_the_same_policy_reports_nothing(tmp_path: Path) -> None:
    """Starting with the policy the daemon already loaded checks the file without a report."""
    path = tmp_path / "envelope.yaml"
    write(path, VALID)
    calls = Calls()
    watcher = PolicyWatcher(path, calls.loaded.append, calls.errors.append,
                            current=load_policy(path))
    watcher.start()
    watcher.stop()
    assert calls == Calls() and watcher.attempts == 1


def test_valid_edit_in_place_is_loaded(watched: Watched) -> None:
    """Rewriting the file with valid content hands the new policy to on_loaded."""
    write(watched.path, "version: 2\nacceptance:\n  min_speedup: 1.2\n")
    wait_for(lambda: len(watched.calls.loaded) == 2)
    new = watched.calls.loaded[-1]
    assert (new.version, new.acceptance.min_speedup) == (2, 1.2)
    assert watched.watcher.current is new
    assert watched.calls.errors == []


def test_valid_edit_by_rename_is_loaded(watched: Watched) -> None:
    """Replacing the file by rename, as editors do, is seen through the directory watch."""
    replace_by_rename(watched.path, "version: 2\nbudgets: {cycles_per_hour: 6}\n")
    wait_for(lambda: len(watched.calls.loaded) == 2)
    assert watched.watcher.current is not None
    assert watched.watcher.current.budgets.cycles_per_hour == 6


@pytest.mark.parametrize("text, expected", [
    ("version: 2\nscope:\n  include: [x:*\n", "YAML syntax"),
    ("version: 2\nsandbox:\n  cpu_seconds: lots\n", "must be a whole number"),
    ("version: 2\nsandbox:\n  require:\n    network: true\n", "unknown key 'network'"),
    ("", "empty"),
    (VALID.replace("min_speedup: 1.05", "min_speedup: [1.0"), "cut short"),
    ("version: 2\nacceptance:\n  min_speedup: 0.9\n", "must be >= 1.0"),
], ids=["syntax", "wrong-type", "unknown-key", "empty", "half-written", "out-of-range"])
def test_invalid_edit_keeps_the_last_good_policy(watched: Watched, text: str,
                                                 expected: str) -> None:
    """An invalid edit goes to on_error and the policy in force does not change."""
    good = watched.watcher.current
    write(watched.path, text)
    wait_for(lambda: len(watched.calls.errors) >= 1)
    assert expected in str(watched.calls.errors[-1])
    assert str(watched.path) in str(watched.calls.errors[-1])
    assert watched.watcher.current is good
    assert len(watched.calls.loaded) == 1
    write(watched.path, "version: 3\n")  # and it keeps watching
    wait_for(lambda: len(watched.calls.loaded) == 2)
    assert watched.calls.loaded[-1].version == 3


def test_deletion_keeps_the_last_good_policy(watched: Watched) -> None:
    """Deleting the file is an error, the policy stays, and recreating it loads again."""
    good = watched.watcher.current
    watched.path.unlink()
    wait_for(lambda: len(watched.calls.errors) >= 1)
    assert "no such file" in str(watched.calls.errors[-1])
    assert watched.watcher.current is good
    write(watched.path, "version: 4\n")
    watched.path.chmod(0o644)
    wait_for(lambda: len(watched.calls.loaded) == 2)
    assert watched.calls.loaded[-1].version == 4


def test_symlink_replacement_keeps_the_last_good_policy(watched: Watched, tmp_path: Path) -> None:
    """Replacing the file by a symlink (even to a valid policy) is refused."""
    good = watched.watcher.current
    elsewhere = tmp_path / "elsewhere.yaml"
    write(elsewhere, "version: 9\n")
    elsewhere.chmod(0o644)
    link = tmp_path / "link.tmp"
    link.symlink_to(elsewhere)
    os.replace(link, watched.path)
    wait_for(lambda: len(watched.calls.errors) >= 1)
    assert "symbolic link" in str(watched.calls.errors[-1])
    assert watched.watcher.current is good


def test_world_writable_keeps_the_last_good_policy(watched: Watched) -> None:
    """Making the file world-writable is noticed (an attribute change) and refused."""
    good = watched.watcher.current
    watched.path.chmod(0o666)
    wait_for(lambda: len(watched.calls.errors) >= 1)
    assert "world-writable" in str(watched.calls.errors[-1])
    assert watched.watcher.current is good


def test_identical_rewrite_triggers_nothing(watched: Watched) -> None:
    """Writing the same bytes again reloads but reports neither a new policy nor an error."""
    before = watched.watcher.attempts
    write(watched.path, VALID)
    watched.settle(before)
    assert len(watched.calls.loaded) == 1 and watched.calls.errors == []


def test_other_files_in_the_directory_are_ignored(watched: Watched) -> None:
    """Changes to neighbours of the policy file do not cause loads."""
    before = watched.watcher.attempts
    write(watched.path.with_name("notes.txt"), "hello")
    time.sleep(DEBOUNCE * 4)
    assert watched.watcher.attempts == before


def test_burst_of_writes_is_loaded_once(watched: Watched) -> None:
    """Several quick writes inside the debounce window lead to one load of the final content."""
    before = watched.watcher.attempts
    for version in range(2, 6):
        write(watched.path, f"version: {version}\n")
    wait_for(lambda: len(watched.calls.loaded) == 2)
    assert watched.calls.loaded[-1].version == 5
    assert watched.watcher.attempts - before <= 2  # inotify may split a burst once


def test_reload_applies_a_change_at_once(tmp_path: Path) -> None:
    """reload(), the SIGHUP path, loads immediately without any observer running."""
    path = tmp_path / "envelope.yaml"
    write(path, VALID)
    calls = Calls()
    watcher = PolicyWatcher(path, calls.loaded.append, calls.errors.append,
                            current=load_policy(path))
    write(path, "version: 7\n")
    watcher.reload()
    assert [p.version for p in calls.loaded] == [7]
    watcher.reload()
    assert len(calls.loaded) == 1


def test_failing_callback_does_not_stop_the_watcher(tmp_path: Path,
                                                    no_leaked_threads: None) -> None:
    """An exception in on_loaded is contained; later changes are still loaded."""
    path = tmp_path / "envelope.yaml"
    write(path, VALID)
    seen: list[int] = []

    def on_loaded(policy: Policy) -> None:
        seen.append(policy.version)
        raise RuntimeError("subscriber bug")

    watcher = PolicyWatcher(path, on_loaded, lambda err: None, debounce=DEBOUNCE)
    watcher.start()
    try:
        write(path, "version: 2\n")
        wait_for(lambda: seen[-1:] == [2])
        write(path, "version: 3\n")
        wait_for(lambda: seen[-1:] == [3])
        assert watcher.current is not None and watcher.current.version == 3
    finally:
        watcher.stop()


def test_stop_joins_every_thread(tmp_path: Path) -> None:
    """After stop() no observer, emitter or debounce thread is left alive."""
    path = tmp_path / "envelope.yaml"
    write(path, VALID)
    before = set(threading.enumerate())
    watcher = PolicyWatcher(path, lambda p: None, lambda e: None, debounce=DEBOUNCE)
    watcher.start()
    assert len(set(threading.enumerate()) - before) >= 2
    watcher.stop()
    assert [t for t in threading.enumerate() if t not in before and t.is_alive()] == []


def test_missing_directory_cannot_be_watched(tmp_path: Path) -> None:
    """Watching a policy in a directory that does not exist fails at start with a PolicyError."""
    path = tmp_path / "absent" / "envelope.yaml"
    watcher = PolicyWatcher(path, lambda p: None, lambda e: None)
    with pytest.raises(PolicyError, match="cannot watch"):
        watcher.start()
    assert watcher.current is None
    watcher.stop()


def test_a_lower_version_is_refused_and_the_last_good_policy_kept(watched: Watched) -> None:
    """Putting back an older policy (a lower version) is an error; the newer one stays."""
    before = watched.watcher.attempts
    write(watched.path, "version: 3\nbudgets: {cycles_per_hour: 6}\n")
    watched.settle(before)
    before = watched.watcher.attempts
    write(watched.path, "version: 2\nbudgets: {cycles_per_hour: 60}\n")
    watched.settle(before)
    current = watched.watcher.current
    assert current is not None and current.version == 3
    assert current.budgets.cycles_per_hour == 6
    [error] = watched.calls.errors
    assert "version 2 is lower than version 3" in str(error)
    assert error.issues[0].location == "version" and "version: 4" in str(error)


def test_new_content_under_the_same_version_is_refused(watched: Watched) -> None:
    """An edit that forgets to bump the version is refused, saying which version to set."""
    before = watched.watcher.attempts
    write(watched.path, "version: 1\nacceptance:\n  min_speedup: 3.0\n")
    watched.settle(before)
    current = watched.watcher.current
    assert current is not None and current.acceptance.min_speedup == 1.05
    [error] = watched.calls.errors
    assert "still 1" in str(error) and "version: 2" in str(error)


def test_a_downgrade_is_loaded_when_the_operator_allows_it(tmp_path: Path) -> None:
    """With allow_downgrade an older policy replaces the one in force."""
    path = tmp_path / "envelope.yaml"
    write(path, "version: 5\n")
    path.chmod(0o644)
    calls = Calls()
    watcher = PolicyWatcher(path, calls.loaded.append, calls.errors.append,
                            current=load_policy(path), allow_downgrade=True)
    write(path, "version: 4\nbudgets: {cycles_per_hour: 6}\n")
    watcher.reload()
    assert calls.errors == [] and [p.version for p in calls.loaded] == [4]
