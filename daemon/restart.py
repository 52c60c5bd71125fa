"""Re-applying accepted versions when the daemon starts again.

:func:`snapshots.restore.plan_restore` decides, from the saved state alone,
what becomes of each active version; :func:`reapply` carries the decisions out
in the live process: a tampered version is rejected and reported as an
integrity violation, a stale one is marked stale, and an applicable one is
installed, with the versions it replaced beneath it so that a rollback falls
back to them as it would have before the restart.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any

from daemon import events as ev
from daemon.errors import SwapError
from daemon.ledger import Ledger
from daemon.swap import SwapManager
from snapshots.restore import RestoreDecision
from snapshots.versions import Version


def reapply(decisions: Sequence[RestoreDecision], swapper: SwapManager, ledger: Ledger,
            bus: ev.EventBus, log: Any) -> None:
    """Carry out the restart ``decisions``: install, mark stale, or reject each version."""
    for decision in decisions:
        target, vid = decision.target, decision.version_id
        if decision.action == "tampered":
            ledger.deactivate(target, vid, "rejected", decision.reason)
            bus.publish(ev.IntegrityViolation(f"objects/{vid}", vid, decision.reason))
            continue
        if decision.action == "stale" or decision.version is None:
            ledger.deactivate(target, vid, "stale", decision.reason)
            bus.publish(ev.VersionStale(target, vid, decision.expected_base,
                                        decision.actual_base or ""))
            continue
        try:
            code = swapper.compile(target, decision.version.source, vid)
        except SwapError as exc:
            ledger.deactivate(target, vid, "stale", f"not installable: {exc}")
            bus.publish(ev.VersionStale(target, vid, decision.expected_base,
                                        decision.actual_base or ""))
            continue
        for earlier, earlier_code in _compiled_chain(swapper, target, decision.predecessors,
                                                     log):
            swapper.install(target, earlier.id, earlier_code)
        swapper.install(target, vid, code)
        bus.publish(ev.VersionRestored(target, vid))


def _compiled_chain(swapper: SwapManager, target: str, chain: Sequence[Version],
                    log: Any) -> list[tuple[Version, types.CodeType]]:
    """``chain`` (oldest first) compiled, cut below the newest version that does not compile."""
    compiled: list[tuple[Version, types.CodeType]] = []
    for version in reversed(chain):
        try:
            compiled.append((version, swapper.compile(target, version.source, version.id)))
        except SwapError as exc:
            log.warning("restore_chain_cut", target=target, version=version.id, error=str(exc))
            break
    return compiled[::-1]
