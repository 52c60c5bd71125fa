"""The audit log anchored outside itself: signed checkpoints, the anchored check and the writer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from snapshots import (
    Anchor,
    AnchorError,
    AuditLog,
    AuditRefused,
    Checkpoint,
    Snapshots,
    VerifyResult,
    generate_keypair,
    load_private_key,
    load_public_key,
    verify_file,
)
from snapshots.audit import REPAIRED_KIND, read_records, verify_chain
from snapshots.checkpoint import (
    default_checkpoint_path,
    parse_checkpoints,
    read_checkpoints,
    sign_checkpoint,
)
from snapshots.keys import key_id

from . import tamper
from .factories import chain_lines, make_anchor, public_key_path, write_anchored_log

COUNT = 40
MIDDLE = 21

# case -> (tamper, seq it changes, seq named with a checkpoint every 8 records: the change
# itself when the chain shows it, else the first record after the last checkpoint that agrees)
CASES: dict[str, tuple[tamper.Tamper, int, int]] = {
    "flip": (tamper.flip, MIDDLE, MIDDLE),
    "delete": (tamper.delete, MIDDLE, MIDDLE),
    "swap": (tamper.swap, MIDDLE, MIDDLE),
    "edit last": (tamper.flip, COUNT, COUNT),
    "truncate last": (tamper.truncate, COUNT, 33),
    "truncate last five": (tamper.truncate, COUNT - 4, 33),
    "disguised torn tail": (tamper.disguised_torn_tail, COUNT, 33),
    "careless torn tail": (tamper.careless_torn_tail, COUNT, COUNT),
    "full recompute": (tamper.recompute, MIDDLE, 17),
    "consistent renumbering": (tamper.renumber, MIDDLE, 17),
    "truncate and refill": (tamper.truncate_and_refill, MIDDLE, 17),
}


@pytest.fixture
def anchor(tmp_path: Path) -> Anchor:
    """A key pair and a checkpoint file outside ``tmp_path/state``, a checkpoint every 8 records."""
    return make_anchor(tmp_path, every=8)


def log_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "audit.log"


def verify(path: Path, anchor: Anchor) -> VerifyResult:
    return verify_file(path, anchor.checkpoints, load_public_key(public_key_path(anchor)))


def rewrite(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines), encoding="utf-8")


def vouched(lines: list[str]) -> dict[int, str]:
    """What a checkpoint after every record would vouch for."""
    return {json.loads(line)["seq"]: json.loads(line)["hash"] for line in lines}


def test_writer_signs_the_head_every_n_records_and_at_close(tmp_path: Path, anchor: Anchor) -> None:
    """Checkpoints land every 8 records and at close, each signed and matching its record."""
    path = log_path(tmp_path)
    write_anchored_log(path, anchor, 20)
    found = read_checkpoints(anchor.checkpoints, load_public_key(public_key_path(anchor)))
    hashes = {r.seq: r.hash for r in read_records(path)}
    assert sorted(found.vouched) == [8, 16, 20]
    assert all(found.vouched[seq] == hashes[seq] for seq in found.vouched)
    first = json.loads(anchor.checkpoints.read_text(encoding="utf-8").splitlines()[0])
    assert list(first) == ["v", "seq", "hash", "ts", "key", "sig"]
    result = verify_file(path, anchor.checkpoints, load_public_key(public_key_path(anchor)))
    assert (result.ok, result.records, result.anchor) == (
        True, 20, "anchored: 3 checkpoints, last at seq 20")


def test_without_a_key_the_check_is_as_before_and_says_unanchored(
        tmp_path: Path, anchor: Anchor) -> None:
    """An unanchored check of an anchored log passes and reports itself as unanchored."""
    path = log_path(tmp_path)
    write_anchored_log(path, anchor, 10)
    result = verify_file(path)
    assert (result.ok, result.records, result.anchored, result.anchor) == (
        True, 10, False, "unanchored")


@pytest.mark.parametrize("case", list(CASES))
def test_every_tamper_is_named_exactly_with_a_checkpoint_per_record(case: str) -> None:
    """With a checkpoint for every record, each tamper is caught at the seq it changed."""
    change, seq, _ = CASES[case]
    lines = chain_lines(COUNT)
    result = verify_chain(change(lines, seq), vouched(lines))
    assert (result.ok, result.first_bad_seq) == (False, seq), result.problem
    assert result.records == seq - 1


@given(st.sampled_from(["delete", "truncate last five", "full recompute",
                        "consistent renumbering", "truncate and refill"]),
       st.integers(min_value=1, max_value=COUNT - 5), st.integers(min_value=1, max_value=12))
def test_a_rewrite_is_named_within_the_checkpoint_interval(case: str, seq: int, every: int) -> None:
    """Whatever the interval, the named seq is at or before the change, within one interval."""
    change = CASES[case][0]
    lines = chain_lines(COUNT)
    signed = {s: h for s, h in vouched(lines).items() if s % every == 0 or s == COUNT}
    result = verify_chain(change(lines, seq), signed)
    assert not result.ok
    assert result.first_bad_seq is not None
    assert seq - every < result.first_bad_seq <= seq


@pytest.mark.parametrize("case", list(CASES))
def test_every_tamper_is_caught_in_a_real_anchored_log(
        tmp_path: Path, anchor: Anchor, case: str) -> None:
    """Every tamper of an anchored log is caught, naming the first record no checkpoint covers."""
    change, seq, named = CASES[case]
    path = log_path(tmp_path)
    write_anchored_log(path, anchor, COUNT)
    rewrite(path, change(path.read_text(encoding="utf-8").splitlines(True), seq))
    result = verify_file(path, anchor.checkpoints, load_public_key(public_key_path(anchor)))
    assert (result.ok, result.first_bad_seq, result.torn_tail) == (False, named, False)
    assert named <= seq
    assert result.anchor == f"anchored: 5 checkpoints, last at seq {COUNT}"


@pytest.mark.parametrize("case", ["truncate last", "truncate last five", "disguised torn tail",
                                  "full recompute", "consistent renumbering"])
def test_what_the_chain_alone_misses(tmp_path: Path, anchor: Anchor, case: str) -> None:
    """These tampers pass an unanchored check, which is why the log needs its anchor."""
    change, seq, _ = CASES[case]
    path = log_path(tmp_path)
    write_anchored_log(path, anchor, COUNT)
    rewrite(path, change(path.read_text(encoding="utf-8").splitlines(True), seq))
    assert verify_file(path).ok


@pytest.mark.parametrize("case", list(CASES))
def test_writer_refuses_a_tampered_log_and_changes_no_byte(
        tmp_path: Path, anchor: Anchor, case: str) -> None:
    """Opening the writer on a tampered log raises AuditRefused naming the seq; no file changes."""
    change, seq, named = CASES[case]
    path = log_path(tmp_path)
    write_anchored_log(path, anchor, COUNT)
    rewrite(path, change(path.read_text(encoding="utf-8").splitlines(True), seq))
    log_before, anchor_before = path.read_bytes(), anchor.checkpoints.read_bytes()
    with pytest.raises(AuditRefused, match=f"at seq {named}:") as info:
        AuditLog(path, anchor=anchor)
    assert info.value.seq == named
    assert "Nothing was written" in str(info.value)
    assert (path.read_bytes(), anchor.checkpoints.read_bytes()) == (log_before, anchor_before)


def test_each_checkpoint_is_handed_to_the_hook(tmp_path: Path, anchor: Anchor) -> None:
    """on_checkpoint sees every checkpoint written, in order, as it lands in the file."""
    seen: list[Checkpoint] = []
    path = log_path(tmp_path)
    path.parent.mkdir()
    with AuditLog(path, anchor=anchor, on_checkpoint=seen.append) as log:
        for n in range(10):
            log.append("note", {"n": n})
    assert [c.seq for c in seen] == [8, 10]
    assert "".join(c.line() for c in seen) == anchor.checkpoints.read_text(encoding="utf-8")


def test_state_directory_with_a_tampered_log_does_not_open(tmp_path: Path, anchor: Anchor) -> None:
    """Snapshots refuses to open on a cut log, and releases the directory for an investigator."""
    state = tmp_path / "state"
    with Snapshots(state, anchor=anchor) as snaps:
        for n in range(10):
            snaps.audit.append("note", {"n": n})
    lines = (state / "audit.log").read_text(encoding="utf-8").splitlines(True)
    rewrite(state / "audit.log", lines[:-2])
    with pytest.raises(AuditRefused) as info:
        Snapshots(state, anchor=anchor)
    assert info.value.seq == 9  # checkpoints at 8 and 10: 8 agrees, 9 and 10 are gone
    with Snapshots(state) as snaps:  # the lock was released; unanchored, it opens as before
        assert snaps.audit.head[0] == 8


def test_a_deleted_log_is_refused_and_not_created_anew(tmp_path: Path, anchor: Anchor) -> None:
    """With checkpoints on record, a missing log is a log cut to nothing: refused at seq 1."""
    path = log_path(tmp_path)
    write_anchored_log(path, anchor, 3)
    path.unlink()
    with pytest.raises(AuditRefused) as info:
        AuditLog(path, anchor=anchor)
    assert info.value.seq == 1
    assert not path.exists()


def test_genuine_torn_tail_is_repaired_and_anchored(tmp_path: Path, anchor: Anchor) -> None:
    """A torn last line after the last checkpoint is a crash: cut off, recorded and signed."""
    path = log_path(tmp_path)
    write_anchored_log(path, anchor, 12)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"v":1,"seq":13,"ts":1000.0,"prev":"ab')
    before = verify(path, anchor)
    assert (before.ok, before.torn_tail) == (True, True)
    with AuditLog(path, anchor=anchor) as log:
        assert log.repaired is not None and log.repaired.kind == REPAIRED_KIND
        assert log.checkpointed == 13
    after = verify(path, anchor)
    assert (after.ok, after.torn_tail, after.records) == (True, False, 13)


def test_torn_tail_a_checkpoint_vouches_for_is_not_a_crash(tmp_path: Path, anchor: Anchor) -> None:
    """Dropping the newline of a signed last record is tampering, though the record is intact."""
    path = log_path(tmp_path)
    write_anchored_log(path, anchor, 16)
    rewrite(path, [*path.read_text(encoding="utf-8").splitlines(True)[:-1],
                   path.read_text(encoding="utf-8").splitlines()[-1]])
    result = verify(path, anchor)
    assert (result.ok, result.first_bad_seq) == (False, 9)  # 8 is the last checkpoint that agrees
    assert "not a crash" in result.problem


def test_terminated_garbage_last_line_is_tampering_when_anchored(
        tmp_path: Path, anchor: Anchor) -> None:
    """Anchored, a last line with its newline that is not a record cannot be passed off as torn."""
    path = log_path(tmp_path)
    write_anchored_log(path, anchor, 4)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("\x00\x00garbage\n")
    result = verify(path, anchor)
    assert (result.ok, result.first_bad_seq) == (False, 5)


def forged_line(seq: int, digest: str) -> str:
    """A well-formed checkpoint signed by a key that is not the daemon's."""
    return sign_checkpoint(Ed25519PrivateKey.generate(), seq, digest, 5.0).line()


@pytest.mark.parametrize("forgery", ["foreign key", "edited hash", "unsigned", "not json",
                                     "moved back"])
def test_a_forged_checkpoint_line_is_tampering(
        tmp_path: Path, anchor: Anchor, forgery: str) -> None:
    """A checkpoint line not signed by the configured key, or out of order, fails the check."""
    path = log_path(tmp_path)
    write_anchored_log(path, anchor, 24)
    lines = anchor.checkpoints.read_text(encoding="utf-8").splitlines(True)  # seqs 8, 16, 24
    second = json.loads(lines[1])
    if forgery == "foreign key":
        lines[1] = forged_line(16, second["hash"])
    elif forgery == "edited hash":
        lines[1] = json.dumps({**second, "hash": "0" * 64}) + "\n"
    elif forgery == "unsigned":
        lines[1] = json.dumps({k: v for k, v in second.items() if k != "sig"}) + "\n"
    elif forgery == "not json":
        lines[1] = "seq 16 is fine, trust me\n"
    else:
        lines[1], lines[2] = lines[2], lines[1]
    rewrite(anchor.checkpoints, lines)
    result = verify(path, anchor)
    # the good checkpoints before the bad line vouch up to 8 (or, moved back, 8 and 24)
    expected = 25 if forgery == "moved back" else 9
    assert (result.ok, result.first_bad_seq) == (False, expected)
    assert "checkpoint line" in result.problem
    with pytest.raises(AuditRefused):
        AuditLog(path, anchor=anchor)


def test_foreign_key_is_named_in_the_problem() -> None:
    """A checkpoint signed by another key says which key signed it and which was expected."""
    ours = Ed25519PrivateKey.generate()
    theirs = Ed25519PrivateKey.generate()
    line = sign_checkpoint(theirs, 1, "a" * 64, 1.0).line()
    found = parse_checkpoints([line], ours.public_key())
    assert key_id(theirs.public_key()) in found.problem
    assert key_id(ours.public_key()) in found.problem


def test_torn_last_checkpoint_line_is_ignored_and_cut_off(tmp_path: Path, anchor: Anchor) -> None:
    """A checkpoint line without its newline is a crash mid-append: ignored, then removed."""
    path = log_path(tmp_path)
    write_anchored_log(path, anchor, 8)
    complete = anchor.checkpoints.read_bytes()
    with open(anchor.checkpoints, "ab") as fh:
        fh.write(b'{"v":1,"seq":9,"ha')
    assert verify(path, anchor).ok
    with AuditLog(path, anchor=anchor) as log:
        log.append("note", {})
    assert anchor.checkpoints.read_bytes().startswith(complete)
    assert b'"ha\n' not in anchor.checkpoints.read_bytes()
    assert verify(path, anchor).ok


def test_an_old_unanchored_log_is_anchored_from_its_head(tmp_path: Path, anchor: Anchor) -> None:
    """A log written before a key was configured gets its head signed on the first anchored open."""
    path = log_path(tmp_path)
    path.parent.mkdir()
    rewrite(path, chain_lines(5))
    with AuditLog(path, anchor=anchor) as log:
        assert log.checkpointed == 5
    assert verify(path, anchor).anchor == "anchored: 1 checkpoints, last at seq 5"


def test_anchor_inside_the_state_directory_is_refused(tmp_path: Path, anchor: Anchor) -> None:
    """A checkpoint file or key in the state directory is refused before anything is written."""
    state = tmp_path / "state"
    state.mkdir()
    inside = Anchor(anchor.key, state / "checkpoints")
    with pytest.raises(AnchorError, match="inside the state directory"):
        AuditLog(state / "audit.log", anchor=inside)
    assert not (state / "checkpoints").exists()
    with pytest.raises(AnchorError, match="N >= 1"):
        Anchor(anchor.key, anchor.checkpoints, every=0)


def test_default_checkpoint_path_is_beside_the_state_directory(tmp_path: Path) -> None:
    """The default checkpoint file is <state>-anchor/checkpoints, outside the state directory."""
    assert default_checkpoint_path(tmp_path / "selfmod") == (
        tmp_path / "selfmod-anchor" / "checkpoints")


def test_keys_load_from_pem_or_raw_bytes(tmp_path: Path) -> None:
    """Private and public keys load from PEM or raw 32 bytes; the public one derives from either."""
    private, public = generate_keypair(tmp_path)
    key = load_private_key(private)
    want = key_id(key.public_key())
    assert key_id(load_public_key(public)) == want
    assert key_id(load_public_key(private)) == want
    raw_private = tmp_path / "raw.key"
    raw_private.write_bytes(key.private_bytes(serialization.Encoding.Raw,
                                              serialization.PrivateFormat.Raw,
                                              serialization.NoEncryption()))
    raw_public = tmp_path / "raw.pub"
    raw_public.write_bytes(key.public_key().public_bytes(serialization.Encoding.Raw,
                                                         serialization.PublicFormat.Raw))
    assert key_id(load_private_key(raw_private).public_key()) == want
    assert key_id(load_public_key(raw_public)) == want
    assert private.stat().st_mode & 0o777 == 0o600


def test_bad_key_files_say_what_to_do(tmp_path: Path) -> None:
    """A missing, garbled, RSA or password-protected key is an AnchorError that says why."""
    with pytest.raises(AnchorError, match="cannot read"):
        load_private_key(tmp_path / "missing.key")
    garbled = tmp_path / "garbled.key"
    garbled.write_text("hello\n")
    with pytest.raises(AnchorError, match="keygen"):
        load_private_key(garbled)
    rsa_key = tmp_path / "rsa.key"
    rsa_key.write_bytes(rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(AnchorError, match="Ed25519"):
        load_private_key(rsa_key)
    locked = tmp_path / "locked.key"
    locked.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(AnchorError, match="password"):
        load_private_key(locked)


def test_keygen_never_overwrites(tmp_path: Path) -> None:
    """A second key pair into the same directory is refused and the first one kept."""
    private, _ = generate_keypair(tmp_path)
    first = private.read_bytes()
    with pytest.raises(AnchorError, match="never overwritten"):
        generate_keypair(tmp_path)
    assert private.read_bytes() == first
