"""The shadow protocol's inputs: what one shadow runs (:class:`ShadowJob`) and within what
limits it holds itself (:class:`ShadowLimits`).

One owner for both ends: :class:`envelope.sandbox.Sandbox` writes them with
``to_json``/``to_argv`` and :mod:`invariants.shadow` reads them back with
``from_json``/``from_argv``, so a field added on one side cannot be forgotten on
the other (pyperf's ``to_subprocess``/``from_subprocess`` is the model). The
report that comes back is :mod:`invariants.report`.

The limits' defaults and bounds live here and nowhere else: the policy's
``sandbox`` section (:class:`envelope.policy.SandboxPolicy`) takes its defaults
and its accepted ranges from :data:`LIMIT_BOUNDS`, so a policy that
``selfmod envelope check`` accepts is a policy the sandbox can run.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

from invariants.errors import ProtocolError

# History of JOB_FORMAT:
#   1 — the job as a flat JSON object with a nonce (first format).
#   2 — adds search_seconds, symbolic_seconds, memoise, found_path, shuffle_seed and
#       original_coverage.
JOB_FORMAT: Final = 2

MAX_JOB_BYTES: Final = 16 << 20
HASH_SEED_MAX: Final = 2**32 - 1  # PYTHONHASHSEED's largest value

# (default, lowest, highest) of every limit the shadow applies to itself.
LIMIT_BOUNDS: Final[dict[str, tuple[int, int, int]]] = {
    "cpu_seconds": (30, 1, 3600),
    "memory_mb": (1024, 64, 65536),
    # RLIMIT_FSIZE of 0 would stop the harness writing its own scratch files
    "file_size_mb": (8, 1, 4096),
    # fewer than 16 descriptors leave Python unable to start
    "open_files": (64, 16, 65536),
    "processes": (1, 1, 1024),
    "result_bytes": (4 << 20, 1024, 1 << 30),
}


@dataclass(frozen=True)
class ShadowLimits:
    """The resource limits a shadow sets on itself before it reads its job.

    ``processes`` becomes RLIMIT_NPROC, which the kernel does not enforce for
    root; ``result_bytes`` caps the JSON report on both ends of the pipe.
    """

    cpu_seconds: int = LIMIT_BOUNDS["cpu_seconds"][0]
    memory_mb: int = LIMIT_BOUNDS["memory_mb"][0]
    file_size_mb: int = LIMIT_BOUNDS["file_size_mb"][0]
    open_files: int = LIMIT_BOUNDS["open_files"][0]
    processes: int = LIMIT_BOUNDS["processes"][0]
    result_bytes: int = LIMIT_BOUNDS["result_bytes"][0]

    def __post_init__(self) -> None:
        for name, (_, low, high) in LIMIT_BOUNDS.items():
            value = getattr(self, name)
            if type(value) is not int or not low <= value <= high:
                raise ProtocolError(f"sandbox.{name} must be an integer from {low} to {high}, "
                                    f"not {value!r}")

    def to_argv(self) -> list[str]:
        """The shadow's command-line options for these limits."""
        argv: list[str] = []
        for item in fields(self):
            argv += [f"--{item.name.replace('_', '-')}", str(getattr(self, item.name))]
        return argv

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Declare the options :meth:`to_argv` writes (defaults from :data:`LIMIT_BOUNDS`)."""
        for name, (default, _, _) in LIMIT_BOUNDS.items():
            parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)

    @classmethod
    def from_args(cls, options: argparse.Namespace) -> ShadowLimits:
        return cls(**{name: getattr(options, name) for name in LIMIT_BOUNDS})

    def apply(self) -> None:
        """Set these limits on this process (and what it executes), never above a hard limit
        already in force; RLIMIT_NPROC binds only a non-root user."""
        import resource

        wanted = {
            resource.RLIMIT_CPU: (self.cpu_seconds, self.cpu_seconds + 1),
            resource.RLIMIT_AS: (self.memory_mb << 20,) * 2,
            resource.RLIMIT_FSIZE: (self.file_size_mb << 20,) * 2,
            resource.RLIMIT_NOFILE: (self.open_files,) * 2,
            resource.RLIMIT_NPROC: (self.processes,) * 2,
            resource.RLIMIT_CORE: (0, 0),
        }
        for which, (soft, hard) in wanted.items():
            _, current_hard = resource.getrlimit(which)
            if current_hard != resource.RLIM_INFINITY:
                soft, hard = min(soft, current_hard), min(hard, current_hard)
            resource.setrlimit(which, (soft, hard))


@dataclass(frozen=True)
class ShadowJob:
    """One candidate to try against one recorded corpus."""

    target: str
    candidate_source: str
    corpus_path: str
    sys_path: tuple[str, ...]
    repeats: int = 15
    min_sample_seconds: float = 0.02
    # the acceptance rule (policy.acceptance): timing stops early once the pairs so far
    # decide it either way (invariants.accept.settled); min_speedup 0: all repeats
    min_speedup: float = 0.0
    confidence: float = 0.95
    hash_seeds: tuple[int, int] = (0, 1)
    bench_calls: int = 0  # time only the first N recorded calls (0: all); all are replayed
    # Property checks (policy.properties, which the cycle passes on): generated inputs,
    # drawn with a fixed seed, each allowed deadline_ms; none for impure targets
    # (policy.invariants.impure). Off unless asked for: drawing them costs the child
    # about a second of its CPU limit.
    examples: int = 0
    deadline_ms: int = 200
    property_seed: int = 0
    impure: bool = False
    invariants: tuple[str, ...] = ()  # declared predicates (module:function) for this target
    # policy.verification: time for the guided search of inputs reaching unexercised code
    # and for the symbolic diff (0: none), and whether the candidate may keep state
    search_seconds: float = 0.0
    symbolic_seconds: float = 0.0
    memoise: bool = False
    # inputs found by earlier searches for this target (JSON of literals, see
    # invariants.literal), replayed on original and candidate like generated ones
    found_path: str = ""
    shuffle_seed: int = 0  # a nonzero seed replays the corpus in an order shuffled with it
    # measure the original's coverage too: needed only to excuse a rule's untouched code,
    # and tracing the (slower) original doubles what coverage costs
    original_coverage: bool = False

    def to_json(self, nonce: str) -> bytes:
        """The job as the child reads it; paths made absolute (the child runs in its tmp dir).

        ``hash_seeds`` stays with the parent: each child gets its one seed through
        ``PYTHONHASHSEED``, which it must run under before any Python code.
        """
        data: dict[str, Any] = asdict(self)
        del data["hash_seeds"]
        data.update(format=JOB_FORMAT, nonce=nonce,
                    corpus_path=os.path.abspath(self.corpus_path),
                    found_path=os.path.abspath(self.found_path) if self.found_path else "",
                    sys_path=[os.path.abspath(entry) for entry in self.sys_path],
                    invariants=list(self.invariants))
        return json.dumps(data).encode("utf-8")

    @classmethod
    def from_json(cls, payload: bytes) -> tuple[ShadowJob, str]:
        """The job and its nonce; a :class:`ProtocolError` for anything else."""
        try:
            data = json.loads(payload)
        except ValueError as exc:
            raise ProtocolError(f"the job is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ProtocolError("the job is not a JSON object")
        if data.pop("format", None) != JOB_FORMAT:
            raise ProtocolError(f"the job is not in format {JOB_FORMAT}")
        nonce = data.pop("nonce", None)
        if not isinstance(nonce, str):
            raise ProtocolError("the job carries no nonce")
        known = {item.name for item in fields(cls)} - {"hash_seeds"}
        if unknown := set(data) - known:
            raise ProtocolError(f"the job has unknown fields: {sorted(unknown)}")
        try:
            job = cls(**{**data, "sys_path": tuple(data["sys_path"]),
                         "invariants": tuple(data.get("invariants", ()))})
        except (KeyError, TypeError) as exc:
            raise ProtocolError(f"the job is incomplete: {exc}") from exc
        return job, nonce
