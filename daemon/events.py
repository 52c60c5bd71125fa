"""Domain events and the bus that carries them.

Every decision the daemon makes is one of these frozen dataclasses, published on
one :class:`EventBus`. The audit log, structlog and Prometheus subscribe to it,
so none of the stages needs to know who is listening.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, ClassVar


class CycleOutcome(StrEnum):
    """How a synthesis cycle ended; str-valued, so logs, audit records and labels read the same."""

    SWAPPED = "swapped"  # a candidate is live and held up under its canary
    PENDING = "pending"  # a candidate passed every check and waits for `selfmod approve`
    ROLLED_BACK = "rolled_back"  # the canary took the swapped candidate out again
    REJECTED = "rejected"  # every candidate failed a stage
    NO_CANDIDATES = "no_candidates"  # no proposer had a usable rewrite
    NO_CORPUS = "no_corpus"  # too few live calls were recorded to judge anything
    ABORTED = "aborted"  # the daemon began stopping during the cycle
    ERROR = "error"  # the target could not be loaded, or a stage failed unexpectedly


@dataclass(frozen=True)
class Event:
    """Base of all events; ``kind`` is the audit record kind."""

    kind = "event"
    # fields for in-process subscribers only: not part of the audit record or the log line
    unrecorded: ClassVar[frozenset[str]] = frozenset()

    def body(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in self.unrecorded}


@dataclass(frozen=True)
class DaemonStarted(Event):
    kind = "daemon_started"
    pid: int
    state_dir: str
    isolation: dict[str, bool] = field(default_factory=dict)
    allow_policy_downgrade: bool = False  # the operator's override, on the record


@dataclass(frozen=True)
class ControlRequest(Event):
    """A state-changing request on the control socket, or any refused one, with its peer."""

    kind = "control_request"
    route: str  # "POST /pause"
    uid: int
    pid: int
    status: int  # the HTTP status answered; 403 for a peer that may not use the socket


@dataclass(frozen=True)
class DaemonStopped(Event):
    kind = "daemon_stopped"
    reason: str


@dataclass(frozen=True)
class PolicyLoaded(Event):
    kind = "policy_loaded"
    path: str
    policy_version: int
    sha256: str


@dataclass(frozen=True)
class PolicyRejected(Event):
    kind = "policy_rejected"
    path: str
    error: str


@dataclass(frozen=True)
class CycleStarted(Event):
    kind = "cycle_started"
    target: str
    share: float


@dataclass(frozen=True)
class CycleFinished(Event):
    kind = "cycle_finished"
    unrecorded = frozenset({"compute_seconds", "tokens"})
    target: str
    outcome: CycleOutcome
    seconds: float
    candidates: int
    reason: str = ""
    # what the cycle spent, for the metrics: seconds by phase, model tokens by kind
    compute_seconds: Mapping[str, float] = field(default_factory=dict)
    tokens: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CorpusRecorded(Event):
    kind = "corpus_recorded"
    target: str
    calls: int
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CandidateProposed(Event):
    kind = "proposed"
    target: str
    version: str
    origin: str
    parent: str


@dataclass(frozen=True)
class CandidateRejected(Event):
    kind = "rejected"
    target: str
    version: str
    origin: str
    stage: str  # static | sandbox | shadow | accept | canary | policy
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class SelfCorrection(Event):
    """A proposer was sent the evidence of rejected candidates and asked again."""

    kind = "self_correction"
    target: str
    round: int
    feedback: int  # rejected candidates whose evidence was sent
    result: str  # accepted | rejected


@dataclass(frozen=True)
class ProposerFailed(Event):
    """A proposer could not produce candidates (server down, timeout, bad answer)."""

    kind = "proposer_failed"
    target: str
    proposer: str
    error: str


@dataclass(frozen=True)
class CandidateAccepted(Event):
    kind = "accepted"
    target: str
    version: str
    origin: str
    speedup: float
    ci_low: float
    ci_high: float
    calls: int
    # candidate code no check ran, accepted because the policy relaxes coverage for the
    # target ("" when every line and branch ran, or the rest was the original's own)
    unproven: str = ""


@dataclass(frozen=True)
class InputsFound(Event):
    """The shadow found inputs the recorded calls lacked; kept for the next candidates."""

    kind = "inputs_found"
    target: str
    version: str  # the candidate whose shadow run found them
    added: int
    error: str = ""


@dataclass(frozen=True)
class RolloutStarted(Event):
    """An accepted version is about to go live: its baseline window is being taken."""

    kind = "rollout_started"
    target: str
    version: str


@dataclass(frozen=True)
class VersionSwapped(Event):
    kind = "swapped"
    target: str
    version: str
    previous: str
    pause_seconds: float


@dataclass(frozen=True)
class VersionRolledBack(Event):
    kind = "rolled_back"
    target: str
    version: str
    reason: str  # operator | canary_latency | canary_errors | canary_mismatch | ...
    detail: str = ""
    detect_seconds: float = 0.0
    restored: str = ""  # the version live again; "" for the original code


@dataclass(frozen=True)
class TargetExcluded(Event):
    """A target is kept out of synthesis until included again (an operator's word)."""

    kind = "excluded"
    target: str
    by: str  # operator (selfmod exclude) | rollback (an operator's rollback)
    note: str = ""


@dataclass(frozen=True)
class TargetIncluded(Event):
    kind = "included"
    target: str


@dataclass(frozen=True)
class CanaryPassed(Event):
    """A swapped version held up over its canary window; its probes are gone."""

    kind = "canary_passed"
    target: str
    version: str
    calls: int
    compared: int  # live calls also run on the previous code (pure targets)
    latency_ratio: float | None  # median after / before; None when too few calls to judge
    error_rate_increase: float
    seconds: float
    note: str = ""  # what was not judged, and why


@dataclass(frozen=True)
class VersionRestored(Event):
    kind = "restored"
    target: str
    version: str


@dataclass(frozen=True)
class VersionStale(Event):
    kind = "stale"
    target: str
    version: str
    expected_base: str
    actual_base: str


@dataclass(frozen=True)
class IntegrityViolation(Event):
    kind = "integrity_violation"
    path: str
    expected: str
    actual: str


@dataclass(frozen=True)
class OracleMismatch(Event):
    kind = "oracle_mismatch"
    function: str
    detail: str
    count: int = 1  # mismatches since the last event (the app is polled)


@dataclass(frozen=True)
class AppExited(Event):
    """The hosted app's thread ended: it returned, or it raised (what, and where from)."""

    kind = "app_exited"
    app: str  # MOD:CALLABLE
    outcome: str  # "returned", "failed", or "stopped" (returned once asked to, at shutdown)
    error_type: str = ""
    error: str = ""
    where: str = ""  # file:line in function, the app's own frame the error came from
    traceback: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome == "failed"

    def describe(self) -> str:
        """One line: ``app shop.app:main failed: KeyError: 'sku' (shop/app.py:12 in main)``."""
        if not self.failed:
            return f"app {self.app} {self.outcome}"
        return f"app {self.app} failed: {self.error_type}: {self.error} ({self.where})"


Handler = Callable[[Event], None]


class EventBus:
    """Synchronous publish/subscribe; a failing subscriber never stops the others."""

    def __init__(self, on_error: Callable[[Handler, Event, BaseException], None] | None = None):
        self._handlers: list[Handler] = []
        self._lock = threading.Lock()
        self._on_error = on_error

    def subscribe(self, handler: Handler) -> None:
        with self._lock:
            self._handlers.append(handler)

    def publish(self, event: Event) -> None:
        with self._lock:
            handlers = list(self._handlers)
        for handler in handlers:
            try:
                handler(event)
            except Exception as exc:
                if self._on_error is not None:
                    self._on_error(handler, event, exc)
