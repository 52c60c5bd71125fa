"""`selfmod audit verify --public-key` and `selfmod audit keygen`, run as an operator runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from snapshots import Anchor

from . import tamper
from .factories import make_anchor, public_key_path, write_anchored_log

REPO = Path(__file__).resolve().parents[2]


def selfmod(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


def anchored_state(tmp_path: Path, count: int = 20) -> tuple[Path, Anchor]:
    """A state directory whose audit log is anchored in ``tmp_path/anchor``."""
    anchor = make_anchor(tmp_path, every=8)
    write_anchored_log(tmp_path / "state" / "audit.log", anchor, count)
    return tmp_path / "state", anchor


def verify_json(state: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    out = selfmod("audit", "verify", "--state-dir", str(state), "--json", *extra)
    return out.returncode, json.loads(out.stdout)


def test_anchored_verify_reports_the_checkpoints(tmp_path: Path) -> None:
    """An intact anchored log verifies with exit 0 and says how many checkpoints, the last seq."""
    state, anchor = anchored_state(tmp_path)
    out = selfmod("audit", "verify", "--state-dir", str(state),
                  "--public-key", str(public_key_path(anchor)),
                  "--checkpoints", str(anchor.checkpoints))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("audit log OK: 20 records, chain intact; "
                                  "anchored: 3 checkpoints, last at seq 20")


def test_without_a_key_verify_says_unanchored(tmp_path: Path) -> None:
    """Without --public-key the check is the chain alone, and the output says so."""
    state, _ = anchored_state(tmp_path)
    code, data = verify_json(state)
    assert code == 0
    assert (data["ok"], data["anchored"], data["anchor"]) == (True, False, "unanchored")
    text = selfmod("audit", "verify", "--state-dir", str(state)).stdout
    assert text.strip().endswith("; unanchored")


def test_a_cut_tail_passes_unanchored_and_fails_anchored(tmp_path: Path) -> None:
    """Four records cut from the end: the chain alone says OK, the anchored check names seq 17."""
    state, anchor = anchored_state(tmp_path)
    log = state / "audit.log"
    log.write_text("".join(tamper.truncate(log.read_text().splitlines(True), 17)))
    assert verify_json(state)[0] == 0
    code, data = verify_json(state, "--public-key", str(public_key_path(anchor)),
                             "--checkpoints", str(anchor.checkpoints))
    assert (code, data["ok"], data["first_bad_seq"]) == (1, False, 17)
    assert data["anchor"] == "anchored: 3 checkpoints, last at seq 20"
    text = selfmod("audit", "verify", "--state-dir", str(state),
                   "--public-key", str(public_key_path(anchor)),
                   "--checkpoints", str(anchor.checkpoints)).stdout
    assert text.startswith("audit log TAMPERED at seq 17: ")


def test_a_recomputed_rewrite_fails_anchored(tmp_path: Path) -> None:
    """A rewrite with every hash recomputed is caught, naming the first unvouched record."""
    state, anchor = anchored_state(tmp_path)
    log = state / "audit.log"
    log.write_text("".join(tamper.recompute(log.read_text().splitlines(True), 12)))
    code, data = verify_json(state, "--public-key", str(public_key_path(anchor)),
                             "--checkpoints", str(anchor.checkpoints))
    assert (code, data["first_bad_seq"]) == (1, 9)
    assert "seq 9..16" in data["problem"]


def test_checkpoints_default_to_beside_the_state_directory(tmp_path: Path) -> None:
    """Without --checkpoints, <state-dir>-anchor/checkpoints is used; a missing file is an error."""
    anchor = make_anchor(tmp_path, every=8)
    anchor = Anchor(anchor.key, tmp_path / "state-anchor" / "checkpoints", every=8)
    write_anchored_log(tmp_path / "state" / "audit.log", anchor, 9)
    code, data = verify_json(tmp_path / "state", "--public-key", str(public_key_path(anchor)))
    assert (code, data["last_checkpoint_seq"]) == (0, 9)
    anchor.checkpoints.unlink()
    code, data = verify_json(tmp_path / "state", "--public-key", str(public_key_path(anchor)))
    assert code == 1 and "no checkpoint file at" in data["error"]


def test_checkpoints_without_a_key_is_refused(tmp_path: Path) -> None:
    """--checkpoints alone cannot check anything, so it is an error rather than a silent OK."""
    state, anchor = anchored_state(tmp_path)
    code, data = verify_json(state, "--checkpoints", str(anchor.checkpoints))
    assert code == 1 and "--public-key" in data["error"]


def test_keygen_writes_a_pair_the_verifier_accepts(tmp_path: Path) -> None:
    """`audit keygen` writes the signing and public keys once and refuses to overwrite them."""
    out = selfmod("audit", "keygen", "--out", str(tmp_path / "keys"), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    private = Path(data["private_key"])
    assert private.stat().st_mode & 0o777 == 0o600
    assert len(data["key_id"]) == 16
    anchor = Anchor(private, tmp_path / "anchor" / "checkpoints")
    write_anchored_log(tmp_path / "state" / "audit.log", anchor, 3)
    code, _ = verify_json(tmp_path / "state", "--public-key", data["public_key"],
                          "--checkpoints", str(anchor.checkpoints))
    assert code == 0
    again = selfmod("audit", "keygen", "--out", str(tmp_path / "keys"))
    assert again.returncode == 1 and "never overwritten" in again.stderr
