"""The commands that read the state directory: history, diff, export, audit.

They work whether the daemon runs or not, take no lock and never write (but
for ``audit keygen``, which writes a key pair where it is told).
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path
from typing import Any

from daemon.cli_io import emit, state_dir_of, table, utc
from daemon.errors import ConfigError
from snapshots.versions import short_id


def cmd_history(args: argparse.Namespace) -> int:
    from daemon.ledger import Ledger

    versions = Ledger.reader(state_dir_of(args)).history()
    data = [{"id": v.id, "target": v.target, "status": v.status, "origin": v.origin,
             "parent": v.parent, "created_at": v.created_at,
             "speedup": v.evidence.get("speedup"), "ci_low": v.evidence.get("ci_low"),
             "ci_high": v.evidence.get("ci_high"), "stage": v.evidence.get("stage", ""),
             "reason": v.evidence.get("reason", ""), "detail": v.evidence.get("detail", ""),
             "coverage": v.evidence.get("coverage")}
            for v in versions]

    def text(rows: list[dict[str, Any]]) -> str:
        if not rows:
            return "no versions yet"
        cells = [("id", "created (UTC)", "status", "speedup [interval]", "covered", "origin",
                  "target", "why")]
        for r in rows:
            speed = (f"{r['speedup']:.3g}x [{r['ci_low']:.3g}, {r['ci_high']:.3g}]"
                     if r["speedup"] else "")
            why = f"{r['stage']}/{r['reason']}" if r["reason"] else ""
            cells.append((short_id(r["id"]), utc(r["created_at"]), str(r["status"]), speed,
                          _covered(r["coverage"], r["status"] == "rejected"), r["origin"],
                          r["target"], why))
        return table(cells, right=frozenset({3}))

    emit(args, data, text)
    return 0


def _covered(coverage: Any, rejected: bool = False) -> str:
    """``lines ran/total, branches ran/total`` of a version's evidence; "" when unmeasured."""
    if not isinstance(coverage, dict) or not coverage.get("measured"):
        return ""
    lines, branches = coverage.get("lines") or (0, 0), coverage.get("branches") or (0, 0)
    text = f"{lines[0]}/{lines[1]} lines, {branches[0]}/{branches[1]} branches"
    if coverage.get("unproven"):
        text += " (unproven)" if rejected else " (unproven, allowed)"
    return text


UNEXERCISED = "  # <- never ran under the checks"


def cmd_diff(args: argparse.Namespace) -> int:
    from daemon.ledger import Ledger

    ledger = Ledger.reader(state_dir_of(args))
    version = ledger.find(args.id)
    base = ledger.source(version.base_sha)
    new = ledger.source(version.id)
    diff = "".join(difflib.unified_diff(
        base.splitlines(True), new.splitlines(True),
        fromfile=f"{version.target} (base {short_id(version.base_sha)})",
        tofile=f"{version.target} ({short_id(version.id)}, {version.origin})"))
    coverage = version.evidence.get("coverage")
    missing = sorted(coverage.get("missing_lines") or ()) if isinstance(coverage, dict) else []

    def text(d: dict[str, Any]) -> str:
        if not d["diff"]:
            return "(no difference)"
        shown = _mark_lines(d["diff"], set(d["unexercised_lines"]))
        summary = _covered(d["coverage"], version.status == "rejected")
        return f"{shown}\ncoverage: {summary}" if summary else shown

    emit(args, {"id": version.id, "target": version.target, "diff": diff,
                "coverage": coverage, "unexercised_lines": missing}, text)
    return 0


def _mark_lines(diff: str, lines: set[int]) -> str:
    """The unified diff with the new source's ``lines`` marked as never run by a check."""
    if not lines:
        return diff
    out, new_line = [], 0
    for row in diff.splitlines():
        if row.startswith("@@"):
            # @@ -a,b +c,d @@: the new file's lines start at c
            new_line = int(row.split("+", 1)[1].split(",")[0].split(" ")[0])
            out.append(row)
            continue
        if row.startswith(("+++", "---")) or not row:
            out.append(row)
            continue
        if row[0] in " +":
            out.append(row + UNEXERCISED if new_line in lines else row)
            new_line += 1
        else:
            out.append(row)
    return "\n".join(out) + "\n"


def cmd_export(args: argparse.Namespace) -> int:
    from daemon.export import export_versions
    from daemon.ledger import Ledger
    from snapshots import AUDIT_FILE

    state_dir = state_dir_of(args)
    ledger = Ledger.reader(state_dir)
    written = export_versions(ledger.active_versions(), ledger.source, Path(args.out),
                              audit_log=state_dir / AUDIT_FILE,
                              root=Path(args.root) if args.root else None)
    data = {"written": [{"patch": str(e.path), "version": e.version, "target": e.target,
                         "file": str(e.file) if e.file else None} for e in written],
            "summary": str(Path(args.out) / "SUMMARY.md")}

    def text(d: dict[str, Any]) -> str:
        if not d["written"]:
            return "no active versions to export"
        rows = [f"{w['patch']}  ({'applies to ' + w['file'] if w['file'] else 'function only'})"
                for w in d["written"]]
        return "\n".join([*rows, f"summary: {d['summary']}"])

    emit(args, data, text)
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from snapshots import AUDIT_FILE, load_public_key
    from snapshots.audit import verify_file
    from snapshots.checkpoint import default_checkpoint_path

    state_dir = state_dir_of(args)
    if args.public_key is None:
        if args.checkpoints is not None:
            raise ConfigError("--checkpoints needs --public-key: a checkpoint is only as good "
                              "as the signature it is checked against")
        result = verify_file(state_dir / AUDIT_FILE)
    else:
        checkpoints = (Path(args.checkpoints) if args.checkpoints
                       else default_checkpoint_path(state_dir))
        if not checkpoints.is_file():
            raise ConfigError(f"no checkpoint file at {checkpoints}: pass --checkpoints FILE "
                              "(the daemon config's audit checkpoint path)")
        result = verify_file(state_dir / AUDIT_FILE, checkpoints,
                             load_public_key(Path(args.public_key)))
    data = {"ok": result.ok, "records": result.records, "first_bad_seq": result.first_bad_seq,
            "problem": result.problem, "torn_tail": result.torn_tail,
            "anchored": result.anchored, "checkpoints": result.checkpoints,
            "last_checkpoint_seq": result.last_checkpoint_seq, "anchor": result.anchor}

    def text(d: dict[str, Any]) -> str:
        if d["ok"]:
            tail = " (a torn last line from a crash was found)" if d["torn_tail"] else ""
            return f"audit log OK: {d['records']} records, chain intact{tail}; {d['anchor']}"
        return (f"audit log TAMPERED at seq {d['first_bad_seq']}: {d['problem']}; "
                f"{d['anchor']}")

    emit(args, data, text)
    return 0 if result.ok else 1


def cmd_audit_keygen(args: argparse.Namespace) -> int:
    from snapshots import generate_keypair, load_public_key
    from snapshots.keys import key_id

    private, public = generate_keypair(Path(args.out))
    data = {"private_key": str(private), "public_key": str(public),
            "key_id": key_id(load_public_key(public))}
    emit(args, data, lambda d: (
        f"signing key: {d['private_key']} (give it to the daemon only, e.g. LoadCredential=)\n"
        f"public key:  {d['public_key']} (for `selfmod audit verify --public-key`)\n"
        f"key id:      {d['key_id']}"))
    return 0
