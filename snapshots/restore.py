"""What to do with each active version when the daemon starts again.

The decision is a pure function of the saved state, a way to load a verified
source and a way to hash the target's code as loaded now. Applying the
versions, marking the stale ones and writing the audit records is the
daemon's part; keeping the decision apart lets it be tested without a process.

The contract: a version is re-applied only when its stored source still
hashes to its id *and* the target's current base hash equals the one the
version was made against. A source that fails its hash check is ``tampered``
(never applied, whatever the base); a changed or vanished target is ``stale``.

What the daemon does with each: ``apply`` reinstalls ``decision.version`` and
records ``restored``; ``stale`` saves ``deactivate(state, target, STALE)`` and
records ``stale``; ``tampered`` saves ``deactivate(state, target, REJECTED)``
with the reason as evidence and records an integrity violation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .errors import IntegrityError, ObjectMissing
from .state import State
from .versions import Version, VersionRecord

RestoreAction = Literal["apply", "stale", "tampered"]


@dataclass(frozen=True)
class RestoreDecision:
    """One active version's fate at start; ``version`` (with source) is set only for ``apply``."""

    target: str
    version_id: str
    action: RestoreAction
    expected_base: str
    actual_base: str | None
    reason: str
    version: Version | None = None


def plan_restore(
    state: State,
    load_source: Callable[[str], str],
    current_base_sha: Callable[[str], str | None],
) -> list[RestoreDecision]:
    """A decision for every active version, ordered by target.

    ``load_source(id)`` returns the verified source or raises IntegrityError
    or ObjectMissing; ``current_base_sha(target)`` returns the sha256 of the
    target's source as loaded now, or None if the target no longer resolves.
    """
    return [_decide(record, load_source, current_base_sha(record.target))
            for record in state.active_records()]


def _decide(record: VersionRecord, load_source: Callable[[str], str],
            actual: str | None) -> RestoreDecision:
    def decision(action: RestoreAction, reason: str,
                 version: Version | None = None) -> RestoreDecision:
        return RestoreDecision(record.target, record.id, action, record.base_sha, actual,
                               reason, version)

    try:
        source = load_source(record.id)
    except IntegrityError as exc:
        return decision("tampered", str(exc))
    except ObjectMissing as exc:
        return decision("tampered", f"stored source is missing: {exc}")
    if actual is None:
        return decision("stale", f"{record.target} no longer resolves")
    if actual != record.base_sha:
        return decision("stale", f"{record.target} changed: its base is now {actual}, "
                                 f"the version was made for {record.base_sha}")
    return decision("apply", "base unchanged, source intact", Version.from_record(record, source))
