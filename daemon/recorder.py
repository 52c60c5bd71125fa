"""The recorder: captures real calls of a target into a corpus, at a bounded cost.

While recording, a probe wraps the live function. For each sampled call the
arguments are pickled *before* the call (a deep copy that is also the stored
form, and the measure of its size), the function runs, and then the outcome
(value or exception) and the arguments again (mutating an input is behaviour)
are pickled. Calls whose arguments or results cannot be pickled, or are larger
than the bound, are skipped with a counted reason; the call itself always runs
exactly once and its result or exception reaches the caller untouched.

Calls whose arguments pickle to bytes already recorded are skipped as
``duplicate``: replaying the same input twice proves nothing more, and a
shadow run's cost grows with the corpus. When twice as many duplicates as
distinct calls (and at least ``saturation`` of them) arrive in a row, the
workload is taken to have shown its inputs and recording ends early.
"""

from __future__ import annotations

import collections
import hashlib
import pickle
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from daemon.probe import Probe
from envelope.policy import Recording as RecordingPolicy
from snapshots.corpus import PICKLE_PROTOCOL, CallRecord, Corpus

_POLICY = RecordingPolicy()  # the one set of defaults, the policy's


@dataclass(frozen=True)
class RecordingLimits:
    """How much one recording session may take; :meth:`from_policy` is how the daemon builds it."""

    calls: int = _POLICY.calls
    max_record_bytes: int = _POLICY.max_record_bytes
    max_corpus_bytes: int = _POLICY.max_corpus_bytes
    timeout_seconds: float = _POLICY.timeout_seconds
    every: int = 1  # record one call in this many
    saturation: int = 16  # fewest consecutive duplicates that end recording early

    @classmethod
    def from_policy(cls, policy: RecordingPolicy, **changes: Any) -> RecordingLimits:
        """The limits a policy's ``recording`` section sets; ``changes`` tighten them."""
        limits = cls(calls=policy.calls, max_record_bytes=policy.max_record_bytes,
                     max_corpus_bytes=policy.max_corpus_bytes,
                     timeout_seconds=policy.timeout_seconds)
        return replace(limits, **changes)


@dataclass(frozen=True)
class Recording:
    """What a recording session produced."""

    corpus: Corpus
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class Recorder:
    """Records live calls of one function until the count, byte or time bound is hit."""

    def __init__(self, target: str, base_sha: str, func: types.FunctionType,
                 limits: RecordingLimits, *, clock: Callable[[], float] = time.monotonic,
                 probe_lock: threading.Lock | None = None) -> None:
        self.target = target
        self.base_sha = base_sha
        self.limits = limits
        self._clock = clock
        self._records: list[CallRecord] = []
        self._bytes = 0
        self._seen = 0
        self._digests: set[bytes] = set()
        self._repeats = 0  # consecutive duplicate calls
        self.skipped: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._probe = Probe(func, self._handle, probe_lock)

    def _claim(self) -> bool:
        with self._lock:
            if self._done.is_set():
                return False
            self._seen += 1
            return (self._seen - 1) % self.limits.every == 0

    def _skip(self, reason: str) -> None:
        with self._lock:
            self.skipped[reason] += 1

    def _handle(self, inner: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        if not self._claim():
            return inner(*args, **kwargs)
        try:
            args_blob = pickle.dumps((args, kwargs), protocol=PICKLE_PROTOCOL)
        except Exception:
            self._skip("unpicklable_args")
            return inner(*args, **kwargs)
        if len(args_blob) > self.limits.max_record_bytes:
            self._skip("too_large")
            return inner(*args, **kwargs)
        digest = hashlib.blake2b(args_blob, digest_size=16).digest()
        with self._lock:
            duplicate = digest in self._digests
            self._digests.add(digest)
            self._repeats = self._repeats + 1 if duplicate else 0
            if self._repeats >= max(self.limits.saturation, 2 * len(self._records)):
                self._done.set()
        if duplicate:
            self._skip("duplicate")
            return inner(*args, **kwargs)
        try:
            result = inner(*args, **kwargs)
        except BaseException as exc:
            self._store(args_blob, args, kwargs, "raise", exc=exc)
            raise
        self._store(args_blob, args, kwargs, "return", result=result)
        return result

    def _store(self, args_blob: bytes, args: tuple[Any, ...], kwargs: dict[str, Any],
               outcome: str, *, result: Any = None, exc: BaseException | None = None) -> None:
        try:
            after = pickle.dumps((args, kwargs), protocol=PICKLE_PROTOCOL)
            result_blob = (pickle.dumps(result, protocol=PICKLE_PROTOCOL)
                           if outcome == "return" else None)
        except Exception:
            self._skip("unpicklable_result")
            return
        record = CallRecord(
            args_blob=args_blob, outcome=outcome, result_blob=result_blob,
            exc_type=type(exc).__qualname__ if exc is not None else None,
            exc_message=str(exc) if exc is not None else None,
            args_after_blob=None if after == args_blob else after,
        )
        if record.size > self.limits.max_record_bytes:
            self._skip("too_large")
            return
        with self._lock:
            if self._done.is_set():
                return
            if self._bytes + record.size > self.limits.max_corpus_bytes:
                self._done.set()
                return
            self._records.append(record)
            self._bytes += record.size
            if len(self._records) >= self.limits.calls:
                self._done.set()

    def record(self, stop: threading.Event | None = None) -> Recording:
        """Install the probe, wait for the bound (or ``stop``), remove it, return the corpus."""
        started = self._clock()
        deadline = started + self.limits.timeout_seconds
        self._probe.install()
        try:
            while not self._done.is_set() and self._clock() < deadline:
                if stop is not None and stop.is_set():
                    break
                self._done.wait(0.05)
        finally:
            self._done.set()
            self._probe.remove()
        with self._lock:
            records = tuple(self._records)
            skipped = dict(self.skipped)
        return Recording(Corpus(self.target, self.base_sha, records), skipped,
                         self._clock() - started)
