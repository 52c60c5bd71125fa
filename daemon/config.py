"""The daemon's own configuration (``selfmod.yaml``): where things live and how the daemon runs.

What candidates may do, and what counts as better, is the *policy*
(``envelope.yaml``, :mod:`envelope.policy`); this file is about the process:
state directory, ports, sampling rate, the hosted workload. Every field has an
embedded default except the workload: ``workload.app`` (or ``--app``) names
it, and the shipped ``config/selfmod.yaml`` names the bundled demo.

Relative paths in the file are resolved against the file's directory, except
``state_dir``, which is resolved against the working directory (so that a
checkout keeps its state in ``./.selfmod``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from daemon.errors import ConfigError
from snapshots.checkpoint import Anchor, default_checkpoint_path
from snapshots.keys import credential_key_path

# History of CONFIG_FORMAT:
#   1 — first format.
CONFIG_FORMAT = 1


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogConfig(_Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class MetricsConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)  # 0 picks a free port (tests)


class ControlConfig(_Section):
    socket: Path | None = None  # default: <state_dir>/control.sock
    group: str | None = None  # when set, the socket is 0660 and owned by this group


class ProfilerConfig(_Section):
    hz: float = Field(50.0, gt=0, le=1000)
    window_seconds: float = Field(20.0, gt=0)


class CycleConfig(_Section):
    warmup_seconds: float = Field(3.0, ge=0)  # let the profiler and the throughput settle
    interval_seconds: float = Field(0.5, ge=0)  # pause between cycles
    min_share: float = Field(0.03, ge=0, le=1)  # ignore targets below this share of samples
    min_samples: int = Field(50, ge=1)  # before ranking means anything
    # with --exit-when-idle, a scope that got no in-scope sample for this long is idle
    no_samples_seconds: float = Field(60.0, gt=0)
    max_candidates: int = Field(8, ge=1)  # tried per cycle, best first
    bench_calls: int = Field(5, ge=1)  # recorded calls timed by the benchmark (all are replayed)
    min_sample_seconds: float = Field(0.005, gt=0)  # shortest timed sample (loops calibrated)


class WorkloadConfig(_Section):
    app: str | None = None  # MOD:CALLABLE; config/selfmod.yaml names the bundled demo
    options: dict[str, Any] = Field(default_factory=dict)  # keyword arguments for the app


class LLMConfig(_Section):
    base_url: str = "http://127.0.0.1:8000"
    model: str = "Qwen/Qwen2.5-Coder-7B-Instruct"
    api_key_env: str | None = "SELFMOD_LLM_API_KEY"
    api_key_file: Path | None = None
    timeout_seconds: float = Field(60.0, gt=0)
    samples: int = Field(2, ge=1, le=16)
    max_tokens: int = Field(1024, ge=16)
    temperature: float = Field(0.2, ge=0, le=2)


class AuditConfig(_Section):
    # The Ed25519 key that signs the audit log's checkpoints; None: the systemd
    # credential `audit-signing-key` when there is one, else the log is unanchored.
    signing_key: Path | None = None
    checkpoints: Path | None = None  # None: <state_dir>-anchor/checkpoints
    checkpoint_every: int = Field(16, ge=1, le=100_000)  # records between checkpoints


class DaemonConfig(_Section):
    version: int = CONFIG_FORMAT
    state_dir: Path = Path(".selfmod")
    policy: Path | None = None  # None: the embedded default policy, not watched
    proposer: Literal["rules", "llm", "both"] = "rules"  # also a list: [rules, llm]
    log: LogConfig = LogConfig()
    metrics: MetricsConfig = MetricsConfig()
    control: ControlConfig = ControlConfig()
    profiler: ProfilerConfig = ProfilerConfig()
    cycle: CycleConfig = CycleConfig()
    workload: WorkloadConfig = WorkloadConfig()
    llm: LLMConfig = LLMConfig()
    audit: AuditConfig = AuditConfig()

    @field_validator("proposer", mode="before")
    @classmethod
    def _proposer_list(cls, value: Any) -> Any:
        """``[rules, llm]`` (or ``rules,llm`` on the command line) is the same as ``both``."""
        if isinstance(value, str) and "," in value:
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, (list, tuple)):
            names = set(value)
            unknown = names - {"rules", "llm"}
            if unknown or not names:
                raise ValueError(f"proposer list may name rules and llm, not {sorted(unknown)}")
            return "both" if names == {"rules", "llm"} else next(iter(names))
        return value

    def audit_anchor(self, environ: Mapping[str, str]) -> Anchor | None:
        """Where the audit log is anchored, or None when no signing key is configured."""
        key = self.audit.signing_key or credential_key_path(environ)
        if key is None:
            return None
        return Anchor(key, self.audit.checkpoints or default_checkpoint_path(self.state_dir),
                      every=self.audit.checkpoint_every)

    @property
    def control_socket(self) -> Path:
        return self.control.socket or self.state_dir / "control.sock"

    def with_overrides(self, **changes: Any) -> DaemonConfig:
        """A copy with top-level or dotted (``workload.app``) fields replaced; None is ignored."""
        data = self.model_dump()
        for key, value in changes.items():
            if value is None:
                continue
            *parents, leaf = key.split(".")
            node = data
            for parent in parents:
                node = node[parent]
            node[leaf] = value
        try:
            return DaemonConfig.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            dotted = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{dotted}: {first['msg']} (got {first['input']!r} from the "
                              "command line)") from None


def load_config(path: Path | None) -> DaemonConfig:
    """Load ``selfmod.yaml``; None gives the embedded defaults."""
    if path is None:
        return DaemonConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}); "
                          "pass an existing file with --config") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1:1: the config must be a mapping of settings")
    try:
        config = DaemonConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        dotted = ".".join(str(p) for p in first["loc"])
        line, col = _locate(text, first["loc"])
        raise ConfigError(f"{path}:{line}:{col}: {dotted}: {first['msg']}") from exc
    if config.version != CONFIG_FORMAT:
        raise ConfigError(f"{path}: config version {config.version} is not supported; "
                          f"this selfmod reads version {CONFIG_FORMAT}")
    base = path.parent
    if config.policy is not None and not config.policy.is_absolute():
        config = config.model_copy(update={"policy": base / config.policy})
    audit = config.audit
    for key in ("signing_key", "checkpoints"):
        value = getattr(audit, key)
        if value is not None and not value.is_absolute():
            audit = audit.model_copy(update={key: base / value})
    config = config.model_copy(update={"audit": audit})
    return config


def _locate(text: str, loc: tuple[Any, ...]) -> tuple[int, int]:
    """Line and column (1-based) of the YAML node at ``loc``, or of its nearest parent."""
    node: Any = yaml.compose(text)
    mark = node.start_mark if node is not None else None
    for key in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        for key_node, value_node in node.value:
            if key_node.value == str(key):
                mark, node = key_node.start_mark, value_node
                break
        else:
            break
    return (mark.line + 1, mark.column + 1) if mark else (1, 1)
