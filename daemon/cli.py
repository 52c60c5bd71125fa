"""``selfmod``: the command line. Every command has ``--json`` for scripts.

Commands that act on a running daemon (status, pause, resume, rollback,
approve) go through the control socket in the state directory. Commands that
read history (history, diff, export, audit verify; :mod:`daemon.cli_state`)
read the state directory directly, so they work whether the daemon runs or
not; ``rollback`` of a stopped daemon's version is recorded in the state so it
is not re-applied. What every command shares (config, state directory, output)
is :mod:`daemon.cli_io`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from daemon.cli_io import Command, config_of, emit, fail, state_dir_of, utc
from daemon.cli_state import (
    cmd_audit_keygen,
    cmd_audit_verify,
    cmd_diff,
    cmd_export,
    cmd_history,
)
from daemon.control import ControlClient
from daemon.errors import ConfigError, SelfmodError
from snapshots.versions import short_id


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at exit
        return code
    except BrokenPipeError:
        # the reader went away (`selfmod envelope schema | head`): not an error of ours;
        # point stdout at /dev/null so the interpreter's final flush stays quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SelfmodError as exc:
        fail(args, str(exc))
        return exc.exit_code
    except Exception as exc:  # every other failure of a command is one clear line too
        from envelope.errors import EnvelopeError
        from snapshots.errors import SnapshotError

        if isinstance(exc, (EnvelopeError, SnapshotError)):
            fail(args, str(exc))
            return 1
        raise


# -- run ---------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from daemon import logs, preflight
    from daemon.lifecycle import Daemon, RunOptions, install_signal_handlers

    app = args.app
    try:
        preflight.check_metrics_port(args.metrics_port)
        scope = preflight.check_scope(args.scope or ())
        overrides = {"workload.app": args.app, "proposer": args.proposer,
                     "metrics.port": args.metrics_port, "state_dir": args.state_dir}
        overrides = {key: value for key, value in overrides.items() if value is not None}
        config = config_of(args).with_overrides(**overrides)
        app = config.workload.app
        # Like `python -m`, let --app name modules of the directory selfmod is started from.
        if app and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        preflight.check_run(config, scope)  # before anything starts or is written
    except ConfigError as exc:
        if args.report:  # a CI job reads why nothing ran where it reads every run's outcome
            from daemon.report import refused_report, write_report

            write_report(Path(args.report), refused_report(app=app, error=str(exc),
                                                           at=time.time()))
        raise
    logs.configure(config.log.format, config.log.level)
    options = RunOptions(max_cycles=args.max_cycles, exit_when_idle=args.exit_when_idle,
                         allow_policy_downgrade=args.allow_policy_downgrade,
                         report=Path(args.report) if args.report else None,
                         scope=scope,
                         config_path=Path(args.config) if args.config else None,
                         overrides=overrides)
    daemon = Daemon(config, options)
    install_signal_handlers(daemon, daemon.reload)
    code = daemon.run()
    if args.json and args.report is None:
        print(json.dumps(daemon.report(), indent=2, sort_keys=True))
    return code


# -- commands through the control socket ------------------------------------------------

def _client(args: argparse.Namespace) -> ControlClient:
    return ControlClient(config_of(args).control_socket)


def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
    if client.available():
        data = client.request("GET", "/status")
    else:
        from snapshots.state import StateStore

        state_dir = state_dir_of(args)
        state = StateStore(state_dir).load()
        data = {"running": False, "state_dir": str(state_dir),
                "active": dict(state.active),
                "excluded": {t: dict(e) for t, e in state.excluded.items()}}

    def text(d: dict[str, Any]) -> str:
        lines = [f"running: {'yes, pid ' + str(d['pid']) if d['running'] else 'no'}",
                 f"state dir: {d['state_dir']}"]
        if d["running"]:
            iso = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in d["isolation"].items())
            lines += [f"paused: {'yes' if d['paused'] else 'no'}",
                      f"isolation: {iso}",
                      f"audit: {d.get('audit', 'unanchored')}",
                      f"policy: version {d['policy']['version']} "
                      f"({short_id(d['policy']['sha256'])}) from {d['policy']['path']}",
                      f"cycles: {d['cycles']}"]
            halted = d.get("halted") or d.get("budget_halt")
            if halted:
                lines.append(f"synthesis halted: {halted}")
            if d.get("in_flight"):
                now = d["in_flight"]
                lines.append(f"cycle in flight: {now['target']}: {now['stage']} "
                             f"({now['stage_seconds']:.0f}s; cycle {now['seconds']:.0f}s)")
            if d.get("last_cycle"):
                lc = d["last_cycle"]
                lines.append(f"last cycle: {lc['target']} -> {lc['outcome']} "
                             f"({lc['seconds']:.1f}s) {lc['reason']}".rstrip())
            app = d.get("app") or {}
            if app.get("outcome") == "failed":
                lines.append(f"app: FAILED: {app['error_type']}: {app['error']} "
                             f"({app['where']})")
            elif app:
                lines.append(f"app: {app['app']} {app['outcome']}")
            if d.get("workload"):
                w = d["workload"]
                lines.append(f"workload: {w['throughput']:.0f} items/s, oracle mismatches "
                             f"{w['oracle_mismatches']}")
        lines.append(f"active patches: {len(d['active'])}")
        lines += [f"  {t}  {short_id(v)}" for t, v in sorted(d["active"].items())]
        if d.get("awaiting_approval"):
            lines.append(f"awaiting approval: {len(d['awaiting_approval'])} "
                         "(selfmod approve ID)")
            lines += [f"  {t}  {short_id(v)}" for v, t in sorted(d["awaiting_approval"].items())]
        if d.get("approving"):
            lines.append(f"approved, rolling out under the canary: {len(d['approving'])}")
            lines += [f"  {t}  {short_id(v)}" for v, t in sorted(d["approving"].items())]
        if d.get("excluded"):
            lines.append(f"excluded from synthesis: {len(d['excluded'])} (selfmod include TARGET)")
            lines += [f"  {t}  by {e['by']}, {utc(e['at'])}" + (f": {e['note']}" if e["note"]
                                                               else "")
                      for t, e in sorted(d["excluded"].items())]
        return "\n".join(lines)

    emit(args, data, text)
    return 0


def _control_command(route: str, body_key: str | None = None) -> Command:
    def command(args: argparse.Namespace) -> int:
        body = {body_key: getattr(args, body_key)} if body_key else {}
        answer = _client(args).request("POST", route, body)
        emit(args, answer, lambda d: ", ".join(f"{k}: {v}" for k, v in sorted(d.items())))
        return 0

    return command


def cmd_approve(args: argparse.Namespace) -> int:
    answer = _client(args).request("POST", "/approve", {"id": args.id})
    emit(args, answer, lambda d: f"approved {short_id(d['approved'])} for {d['target']}: "
                                  f"{d['next']}")
    return 0


def _live_name(version: str) -> str:
    return f"version {short_id(version)}" if version else "the original code"


def cmd_rollback(args: argparse.Namespace) -> int:
    answer = _live_or_offline(
        args, "/rollback", {"id": args.id},
        lambda ledger: ledger.rollback_offline(
            args.id, excludes=_policy_of(args).approval.rollback_excludes))
    emit(args, answer, lambda d: f"rolled back {short_id(d['rolled_back'])} on {d['target']}; "
                                  f"now live: {_live_name(d.get('restored', ''))}"
                                  + ("; the target stays out of synthesis until `selfmod "
                                     "include`" if d.get("excluded") else ""))
    return 0


def cmd_exclude(args: argparse.Namespace) -> int:
    """Keep a target out of synthesis, live or offline, until included again."""
    answer = _live_or_offline(
        args, "/exclude", {"target": args.target, "note": args.note},
        lambda ledger: ledger.exclude_offline(args.target, "operator", args.note))
    emit(args, answer, lambda d: f"{d['excluded']} is excluded from synthesis until `selfmod "
                                  f"include {d['excluded']}`"
                                  + ("; its active version stays live (selfmod rollback ID "
                                     "takes it out)" if d.get("active") else ""))
    return 0


def cmd_include(args: argparse.Namespace) -> int:
    """Let synthesis try an excluded target again, live or offline."""
    answer = _live_or_offline(args, "/include", {"target": args.target},
                              lambda ledger: ledger.include_offline(args.target))
    emit(args, answer, lambda d: f"{d['included']} may be synthesised again")
    return 0


def _live_or_offline(args: argparse.Namespace, route: str, body: dict[str, Any],
                     offline: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """POST ``body`` to the running daemon's ``route``; with none running, ``offline`` does
    the same on the state directory through the writer's ledger (which takes its lock)."""
    client = _client(args)
    if client.available():
        answer: dict[str, Any] = client.request("POST", route, body)
        return answer
    from daemon.ledger import Ledger
    from snapshots import Snapshots

    with Snapshots(state_dir_of(args)) as snapshots:
        return offline(Ledger.writer(snapshots))


def _policy_of(args: argparse.Namespace) -> Any:
    """The policy the daemon of ``args``'s config runs under (the embedded one by default)."""
    from envelope.policy import DEFAULT_POLICY, load_policy

    path = config_of(args).policy
    return load_policy(path) if path is not None else DEFAULT_POLICY


# -- envelope ---------------------------------------------------------------------------

def cmd_envelope_check(args: argparse.Namespace) -> int:
    from envelope.policy import load_policy

    policy = load_policy(Path(args.file))
    emit(args, {"ok": True, "file": args.file, "version": policy.version,
                 "sha256": policy.sha256},
          lambda d: f"{d['file']}: OK (policy version {d['version']})")
    return 0


def cmd_envelope_schema(args: argparse.Namespace) -> int:
    from envelope.policy import policy_json_schema

    print(json.dumps(policy_json_schema(), indent=2, sort_keys=True))
    return 0


# -- the model server -------------------------------------------------------------------

def cmd_llm_check(args: argparse.Namespace) -> int:
    from daemon.proposers import make_llm_client

    config = config_of(args)
    with make_llm_client(config) as client:
        health = client.health()
        structured = client.probe_structured_output() if health.ok else None
    data: dict[str, Any] = {
        "ok": health.ok, "base_url": config.llm.base_url, "model": health.model,
        "models": list(health.models), "latency_seconds": health.latency_seconds,
        "error": health.error, "context_length": health.context_length,
        "max_tokens": config.llm.max_tokens,
        "structured_output": structured.supported if structured else None,
        "structured_output_detail": structured.detail if structured else ""}

    def text(d: dict[str, Any]) -> str:
        if not d["ok"]:
            return f"{d['base_url']}: NOT OK: {d['error']}"
        context = (f"{d['context_length']} tokens" if d["context_length"]
                   else "not reported by the server")
        supported = {True: "yes", False: "no (selfmod asks for fenced code instead)",
                     None: "unknown"}[d["structured_output"]]
        return "\n".join([
            f"{d['base_url']}: OK, model {d['model']} ({d['latency_seconds'] * 1000:.0f} ms); "
            f"served: {', '.join(d['models'])}",
            f"context length: {context}; llm.max_tokens: {d['max_tokens']}",
            f"structured output: {supported} ({d['structured_output_detail']})"])

    emit(args, data, text)
    return 0 if health.ok else 1


# -- the parser -------------------------------------------------------------------------

def _count(text: str) -> int:
    """A whole number of zero or more, for argparse."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give 0 or more")
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("selfmod")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


# -- jail --------------------------------------------------------------------------------

def cmd_jail_run(args: argparse.Namespace) -> int:
    from envelope.isolation import probe_isolation
    from envelope.jail import Jail, SandboxLimits
    from envelope.policy import DEFAULT_POLICY, load_policy

    path = Path(args.file)
    if not path.is_file():
        fail(args, f"{path}: no such file")
        return 2
    config = config_of(args)
    policy = load_policy(config.policy) if config.policy is not None else DEFAULT_POLICY
    isolation = probe_isolation()
    jail = Jail(SandboxLimits.from_policy(policy.sandbox), isolation,
                hide_paths=[str(config.state_dir.resolve())])
    run = jail.run_file(path, args.args)
    if args.json:
        print(json.dumps({"exit_status": run.exit_status, "timed_out": run.timed_out,
                          "stdout": run.stdout.decode("utf-8", "replace"),
                          "stderr": run.stderr.decode("utf-8", "replace"),
                          "layers": isolation.as_dict()}, indent=2, sort_keys=True))
    else:
        sys.stdout.buffer.write(run.stdout)
        sys.stdout.flush()
        sys.stderr.buffer.write(run.stderr)
        sys.stderr.flush()
    return run.exit_status


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--config", metavar="F", help="daemon config (selfmod.yaml)")
    common.add_argument("--state-dir", metavar="D",
                        help="state directory (default ./.selfmod, or the config's)")

    parser = argparse.ArgumentParser(
        prog="selfmod", description="A self-modifying runtime daemon with a safety envelope.")
    parser.add_argument("--version", action="version", version=f"selfmod {_version()}")
    sub = parser.add_subparsers(metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="run the daemon")
    run.add_argument("--app", metavar="MOD:CALLABLE",
                     help="host this app instead of the bundled demo")
    run.add_argument("--scope", metavar="GLOB", nargs="+",
                     help="target globs (module:qualname), overriding the policy's include")
    run.add_argument("--proposer", metavar="P[,P]",
                     help="rules, llm, or both as 'rules,llm' (overrides the config)")
    run.add_argument("--max-cycles", type=_count, metavar="N",
                     help="stop after N cycles (0: start, restore, and stop)")
    run.add_argument("--allow-policy-downgrade", action="store_true",
                     help="let a policy reload lower the version or change content under the "
                          "same version (recorded in the audit log)")
    run.add_argument("--exit-when-idle", action="store_true",
                     help="stop once no hot target is left to try, and write the report")
    run.add_argument("--report", metavar="F", help="write a JSON report here on exit")
    run.add_argument("--metrics-port", type=int, metavar="P")
    run.set_defaults(func=cmd_run)

    sub.add_parser("status", parents=[common],
                   help="running?, isolation, policy, active patches").set_defaults(
        func=cmd_status)
    sub.add_parser("history", parents=[common],
                   help="versions with status, origin, speedup").set_defaults(func=cmd_history)
    diff = sub.add_parser("diff", parents=[common], help="a version against its base")
    diff.add_argument("id")
    diff.set_defaults(func=cmd_diff)
    rollback = sub.add_parser("rollback", parents=[common], help="remove an active version")
    rollback.add_argument("id")
    rollback.set_defaults(func=cmd_rollback)
    exclude = sub.add_parser("exclude", parents=[common],
                             help="keep a target out of synthesis until included again")
    exclude.add_argument("target", metavar="MODULE:QUALNAME")
    exclude.add_argument("--note", default="", help="why, for the audit log and status")
    exclude.set_defaults(func=cmd_exclude)
    include = sub.add_parser("include", parents=[common],
                             help="let synthesis try an excluded target again")
    include.add_argument("target", metavar="MODULE:QUALNAME")
    include.set_defaults(func=cmd_include)
    sub.add_parser("pause", parents=[common], help="stop starting cycles").set_defaults(
        func=_control_command("/pause"))
    sub.add_parser("resume", parents=[common], help="start cycles again").set_defaults(
        func=_control_command("/resume"))
    approve = sub.add_parser("approve", parents=[common],
                             help="install a version waiting for approval")
    approve.add_argument("id")
    approve.set_defaults(func=cmd_approve)
    export = sub.add_parser("export", parents=[common],
                            help="active versions as patch files to upstream by hand")
    export.add_argument("--out", required=True, metavar="DIR")
    export.add_argument("--root", metavar="DIR",
                        help="the source tree the patches apply to (default: the git top "
                             "level of each file, else the working directory)")
    export.set_defaults(func=cmd_export)

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(metavar="ACTION")
    audit_verify = audit.add_parser("verify", parents=[common], help="check the hash chain")
    audit_verify.add_argument("--public-key", metavar="FILE",
                              help="check against the signed checkpoints (PEM or 32 raw bytes)")
    audit_verify.add_argument("--checkpoints", metavar="FILE",
                              help="the checkpoint file (default <state-dir>-anchor/checkpoints)")
    audit_verify.set_defaults(func=cmd_audit_verify)
    keygen = audit.add_parser("keygen", parents=[common],
                              help="make the key pair that signs audit checkpoints")
    keygen.add_argument("--out", required=True, metavar="DIR")
    keygen.set_defaults(func=cmd_audit_keygen)

    envelope = sub.add_parser("envelope", help="the policy").add_subparsers(metavar="ACTION")
    check = envelope.add_parser("check", parents=[common], help="validate a policy file")
    check.add_argument("file")
    check.set_defaults(func=cmd_envelope_check)
    envelope.add_parser("schema", parents=[common],
                        help="print the policy's JSON Schema").set_defaults(
        func=cmd_envelope_schema)
    llm = sub.add_parser("llm", help="the model server").add_subparsers(metavar="ACTION")
    llm.add_parser("check", parents=[common],
                   help="reach the configured model server; report model and latency"
                   ).set_defaults(func=cmd_llm_check)
    jail = sub.add_parser("jail", help="the shadow's jail").add_subparsers(metavar="ACTION")
    jail_run = jail.add_parser("run", parents=[common],
                               help="run a Python file in exactly the jail a shadow gets")
    jail_run.add_argument("file")
    jail_run.add_argument("args", nargs=argparse.REMAINDER)
    jail_run.set_defaults(func=cmd_jail_run)
    return parser


if __name__ == "__main__":
    sys.exit(main())
