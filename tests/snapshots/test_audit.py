"""The hash-chained audit log: appending, verifying, telling a crash from tampering."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snapshots import AuditError, AuditLog, AuditTampered, verify_chain, verify_file
from snapshots.audit import GENESIS, REPAIRED_KIND, canonical_json, make_record, record_hash
from tests.clock import FakeClock

from .factories import chain_lines


def edited(line: str, **changes: object) -> str:
    """``line`` with some fields changed and its hash left as it was (a careless edit)."""
    fields = json.loads(line)
    fields.update(changes)
    return json.dumps(fields) + "\n"


def forged(seq: int, prev: str) -> str:
    """A well-formed record number ``seq`` chained to ``prev``, as a careful forger would write."""
    return make_record(seq, prev, 5.0, "approved", {"by": "mallory"}).line()


def test_appended_records_form_a_verifiable_chain(tmp_path: Path) -> None:
    """Appended records count from 1, link each to the previous hash and verify."""
    with AuditLog(tmp_path / "audit.log", clock=FakeClock(tick=1.0)) as log:
        records = [log.append("note", {"n": n}) for n in range(5)]
        assert log.verify().ok
        assert log.verify().records == 5
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev == GENESIS
    assert all(later.prev == earlier.hash for earlier, later in itertools.pairwise(records))
    lines = (tmp_path / "audit.log").read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    assert list(first) == ["v", "seq", "ts", "prev", "kind", "body", "hash"]
    assert first["hash"] == record_hash(first)
    assert first["ts"] == 1001.0


def test_hash_is_sha256_of_canonical_json_of_the_other_fields() -> None:
    """The record hash is the sha256 of the sorted, compact, non-ASCII-escaped JSON of the rest."""
    record = make_record(1, GENESIS, 2.5, "note", {"b": "é", "a": [1, 2]})
    rest = {"v": 1, "seq": 1, "ts": 2.5, "prev": GENESIS, "kind": "note",
            "body": {"a": [1, 2], "b": "é"}}
    expected = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(rest) == expected
    assert record.hash == hashlib.sha256(expected.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("field,value", [("body", {"n": 99}), ("ts", 1.0), ("kind", "approved")])
def test_editing_a_middle_record_names_it(field: str, value: object) -> None:
    """Changing the body, ts or kind of record 3 is reported as tampering at seq 3."""
    lines = chain_lines(6)
    lines[2] = edited(lines[2], **{field: value})
    result = verify_chain(lines)
    assert (result.ok, result.first_bad_seq, result.records) == (False, 3, 2)
    assert not result.torn_tail
    assert "hash does not match" in result.problem


def test_deleting_a_record_names_the_missing_seq() -> None:
    """Deleting record 3 is reported at seq 3, where the chain finds 4 instead."""
    lines = chain_lines(6)
    del lines[2]
    result = verify_chain(lines)
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "expected seq 3, found 4" in result.problem


def test_reordering_records_names_the_first_moved_seq() -> None:
    """Swapping records 3 and 4 is reported at seq 3."""
    lines = chain_lines(6)
    lines[2], lines[3] = lines[3], lines[2]
    result = verify_chain(lines)
    assert (result.ok, result.first_bad_seq) == (False, 3)


def test_inserting_a_careless_record_names_it() -> None:
    """A record inserted after record 2 without a matching hash is reported at seq 3."""
    lines = chain_lines(6)
    lines.insert(2, edited(lines[1], body={"by": "mallory"}))
    result = verify_chain(lines)
    assert (result.ok, result.first_bad_seq) == (False, 3)


def test_inserting_a_forged_record_breaks_the_chain_at_the_next_seq() -> None:
    """A well-formed record forged in as seq 3 leaves the original 3 out of place: seq 4 is bad."""
    lines = chain_lines(6)
    prev = json.loads(lines[1])["hash"]
    lines.insert(2, forged(3, prev))
    result = verify_chain(lines)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "expected seq 4, found 3" in result.problem


def test_rehashed_edit_is_caught_by_the_next_link() -> None:
    """An edit whose hash was recomputed shows as a broken prev link in the following record."""
    lines = chain_lines(6)
    fields = json.loads(lines[2])
    fields["body"] = {"n": 99}
    fields["hash"] = record_hash(fields)
    lines[2] = json.dumps(fields) + "\n"
    result = verify_chain(lines)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "prev does not match" in result.problem


def test_unparseable_middle_line_is_tampering() -> None:
    """A line that is not JSON before the last one is tampering, not a torn tail."""
    lines = chain_lines(6)
    lines[3] = '{"v":1,"seq":4\n'
    result = verify_chain(lines)
    assert (result.ok, result.first_bad_seq, result.torn_tail) == (False, 4, False)


def test_rehashed_record_with_wrong_field_types_is_reported() -> None:
    """A record whose hash matches but whose body is not an object is still refused."""
    lines = chain_lines(2)
    fields = json.loads(lines[1])
    fields["body"] = ["not", "an", "object"]
    fields["hash"] = record_hash(fields)
    lines[1] = json.dumps(fields) + "\n"
    result = verify_chain(lines)
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert "wrong type" in result.problem


def test_unknown_format_version_is_reported() -> None:
    """A record claiming another format version stops the check there."""
    lines = chain_lines(3)
    lines[1] = edited(lines[1], v=2)
    result = verify_chain(lines)
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert "v=2" in result.problem


@pytest.mark.parametrize("tail", [
    '{"v":1,"seq":7,"ts":1',  # prefix of a record, no newline
    '\x00\x00\x00\x00',  # zeroed blocks after power loss
    '{"v":1,"seq":7}',  # parses, but the newline never made it
    '{"v":1,"seq":7,"ts\n',  # newline present, JSON not
])
def test_torn_last_line_is_a_crash_not_tampering(tail: str) -> None:
    """A torn last line is reported as torn_tail with ok true and every record before it counted."""
    result = verify_chain([*chain_lines(6), tail])
    assert (result.ok, result.torn_tail, result.records) == (True, True, 6)
    assert result.first_bad_seq is None
    assert "torn" in result.problem


def test_last_line_that_parses_but_does_not_verify_is_tampering() -> None:
    """A complete last record with a wrong hash is tampering, not a torn tail."""
    lines = chain_lines(4)
    lines[-1] = edited(lines[-1], body={"n": 0})
    result = verify_chain(lines)
    assert (result.ok, result.torn_tail, result.first_bad_seq) == (False, False, 4)


def test_empty_log_verifies() -> None:
    """No lines, or no file, is an intact empty chain."""
    assert verify_chain([]).ok
    assert verify_file(Path("/nonexistent/audit.log")).records == 0


@given(st.integers(min_value=1, max_value=8), st.data())
def test_any_careless_edit_is_named_by_seq(count: int, data: st.DataObject) -> None:
    """Whichever record's body is edited, the first bad seq is that record's seq."""
    lines = chain_lines(count)
    index = data.draw(st.integers(min_value=0, max_value=count - 1))
    body = data.draw(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5),
                                     max_size=3))
    if body == json.loads(lines[index])["body"]:
        return
    lines[index] = edited(lines[index], body=body)
    result = verify_chain(lines)
    assert result.first_bad_seq == index + 1
    assert result.records == index


def test_torn_tail_is_repaired_on_open(tmp_path: Path) -> None:
    """Opening a log with a torn tail cuts it off, records the repair, and the chain verifies."""
    path = tmp_path / "audit.log"
    lines = chain_lines(3)
    fragment = '{"v":1,"seq":4,"ts":99.5,"prev":"12'
    path.write_text("".join(lines) + fragment, encoding="utf-8")
    assert verify_file(path).torn_tail
    with AuditLog(path, clock=FakeClock(tick=1.0)) as log:
        repaired = log.repaired
        assert repaired is not None
        assert (repaired.seq, repaired.kind) == (4, REPAIRED_KIND)
        assert repaired.body["dropped_bytes"] == len(fragment)
        assert repaired.body["dropped_start"] == fragment
        assert repaired.body["after_seq"] == 3
        log.append("note", {"after": "repair"})
    result = verify_file(path)
    assert (result.ok, result.torn_tail, result.records) == (True, False, 5)
    assert fragment not in path.read_text(encoding="utf-8")


def test_complete_but_unparseable_last_line_is_repaired(tmp_path: Path) -> None:
    """A last line with its newline but no valid JSON is dropped, newline included."""
    path = tmp_path / "audit.log"
    path.write_text("".join(chain_lines(2)) + "\x00\x00garbage\n", encoding="utf-8")
    with AuditLog(path) as log:
        assert log.repaired is not None
        assert log.repaired.body["dropped_bytes"] == len("\x00\x00garbage\n")
    assert verify_file(path).ok


def test_two_bad_lines_at_the_end_are_not_repaired(tmp_path: Path) -> None:
    """A crash tears one line at most, so two bad lines at the end refuse to open."""
    path = tmp_path / "audit.log"
    original = "".join(chain_lines(2)) + "junk\n" + "more junk"
    path.write_text(original, encoding="utf-8")
    with pytest.raises(AuditError, match="last two lines"):
        AuditLog(path)
    assert path.read_text(encoding="utf-8") == original


def test_intact_log_is_not_touched_on_open(tmp_path: Path) -> None:
    """Opening an intact log writes nothing and continues its chain."""
    path = tmp_path / "audit.log"
    path.write_text("".join(chain_lines(3)), encoding="utf-8")
    size = path.stat().st_size
    with AuditLog(path) as log:
        assert log.repaired is None
        assert path.stat().st_size == size
        assert log.head[0] == 3
        assert log.append("note", {}).seq == 4
    assert verify_file(path).records == 4


def test_reopening_a_long_log_continues_from_its_tail(tmp_path: Path) -> None:
    """A log larger than the tail chunk is continued from its real last record."""
    path = tmp_path / "audit.log"
    with AuditLog(path) as log:
        for n in range(40):
            log.append("note", {"pad": "x" * 4000, "n": n})
    with AuditLog(path) as log:
        assert log.append("note", {}).seq == 41
    assert verify_file(path).records == 41


def test_concurrent_appends_lose_nothing(tmp_path: Path) -> None:
    """Eight threads appending at once produce one valid chain holding every record."""
    path = tmp_path / "audit.log"
    per_thread = 25
    with AuditLog(path) as log:
        barrier = threading.Barrier(8)

        def work(worker: int) -> None:
            barrier.wait()
            for n in range(per_thread):
                log.append("note", {"worker": worker, "n": n})

        threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result = log.verify()
        bodies = {(r.body["worker"], r.body["n"]) for r in log.records()}
    assert (result.ok, result.records) == (True, 8 * per_thread)
    assert bodies == {(w, n) for w in range(8) for n in range(per_thread)}


def test_body_is_normalised_and_non_json_is_refused(tmp_path: Path) -> None:
    """Tuples are stored as lists; a body JSON cannot hold raises AuditError and writes nothing."""
    path = tmp_path / "audit.log"
    with AuditLog(path) as log:
        record = log.append("note", {"pair": (1, 2)})
        assert record.body == {"pair": [1, 2]}
        with pytest.raises(AuditError, match="not plain JSON"):
            log.append("note", {"when": object()})
        with pytest.raises(AuditError):
            log.append("note", {"speedup": float("nan")})
        assert log.head[0] == 1
    assert verify_file(path).records == 1


def test_records_filters_by_kind(tmp_path: Path) -> None:
    """records(kinds) yields only the records of those kinds, in order."""
    with AuditLog(tmp_path / "audit.log") as log:
        for kind in ("proposed", "rejected", "proposed", "swapped"):
            log.append(kind, {})
        assert [r.seq for r in log.records(kinds={"proposed"})] == [1, 3]
        assert [r.kind for r in log.records()] == ["proposed", "rejected", "proposed", "swapped"]


def test_records_raises_on_a_bad_middle_line(tmp_path: Path) -> None:
    """Reading records through a line that is not a record raises AuditTampered with its seq."""
    path = tmp_path / "audit.log"
    lines = chain_lines(3)
    lines[1] = "not json\n"
    path.write_text("".join(lines), encoding="utf-8")
    with AuditLog(path) as log, pytest.raises(AuditTampered) as info:
        log.records()
    assert info.value.seq == 2


def test_closed_log_refuses_appends(tmp_path: Path) -> None:
    """Appending after close raises AuditError instead of writing to a stale descriptor."""
    log = AuditLog(tmp_path / "audit.log")
    log.close()
    with pytest.raises(AuditError, match="closed"):
        log.append("note", {})
