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
records ``restored``, after installing ``decision.predecessors`` beneath it (the
versions it replaced, oldest first, so that a rollback falls back to the
previous version rather than to the original); ``stale`` saves
``deactivate(state, target, STALE)`` and records ``stale``; ``tampered`` saves
``deactivate(state, target, REJECTED)`` with the reason as evidence and records
an integrity violation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from .errors import IntegrityError, ObjectMissing
from .state import State
from .versions import Version, VersionRecord, VersionStatus

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
    # The superseded versions under ``version``, oldest first: each was replaced by
    # the next (the ``replaces`` evidence a version gets when it is activated), has
    # the same base and a verified source. The chain stops at the first that does not.
    predecessors: tuple[Version, ...] = ()


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
    decisions = []
    for record in state.active_records():
        decision = _decide(record, load_source, current_base_sha(record.target))
        if decision.action == "apply":
            decision = replace(decision, predecessors=_predecessors(state, record, load_source))
        decisions.append(decision)
    return decisions


def _predecessors(state: State, record: VersionRecord,
                  load_source: Callable[[str], str]) -> tuple[Version, ...]:
    chain: list[Version] = []
    seen = {record.id}
    replaced = record.evidence.get("replaces")
    while isinstance(replaced, str) and replaced and replaced not in seen:
        earlier = state.versions.get(replaced)
        if earlier is None or earlier.status is not VersionStatus.SUPERSEDED or \
                (earlier.target, earlier.base_sha) != (record.target, record.base_sha):
            break
        try:
            source = load_source(earlier.id)
        except (IntegrityError, ObjectMissing):
            break
        chain.append(Version.from_record(earlier, source))
        seen.add(earlier.id)
        replaced = earlier.evidence.get("replaces")
    return tuple(reversed(chain))


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
