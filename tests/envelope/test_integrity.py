"""Tests for envelope.integrity: changed code or policy is reported once, per file."""

from pathlib import Path

from envelope.integrity import IntegrityMonitor, Violation, compare


def _tree(tmp_path: Path) -> Path:
    for pkg in ("daemon", "envelope", "invariants", "snapshots"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(f"# {pkg}\n")
    return tmp_path


def test_compare_reports_changed_added_and_removed_files():
    """A changed hash, a new file and a vanished file are each a violation."""
    found = compare({"a": "1", "b": "2"}, {"a": "1", "b": "3", "c": "4"})
    assert found == [Violation("b", "2", "3"), Violation("c", "", "4")]
    assert compare({"a": "1"}, {}) == [Violation("a", "1", "")]


def test_monitor_reports_a_modified_daemon_file_once(tmp_path):
    """Editing one of the daemon's files is reported once, with both hashes."""
    root = _tree(tmp_path)
    seen = []
    monitor = IntegrityMonitor(root, lambda: ("p", "p"), seen.append)
    assert monitor.check() == []
    (root / "envelope" / "__init__.py").write_text("import os  # planted\n")
    monitor.check()
    monitor.check()
    assert [v.path for v in seen] == [str(root / "envelope" / "__init__.py")]
    assert seen[0].expected != seen[0].actual


def test_monitor_reports_a_policy_whose_hash_no_longer_matches(tmp_path):
    """A policy object that no longer hashes to its recorded value is a violation."""
    seen = []
    monitor = IntegrityMonitor(_tree(tmp_path), lambda: ("recorded", "tampered"), seen.append)
    monitor.check()
    assert seen == [Violation("<policy in force>", "recorded", "tampered")]
