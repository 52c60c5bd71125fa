"""Which checks a target's candidates get under a policy, and how many active versions had them.

:func:`job_checks` turns the policy's ``properties`` and ``invariants`` sections
into the :class:`envelope.sandbox.ShadowJob` fields for one target.
:func:`coverage` is the verification-coverage KPI: the share of active versions
whose evidence shows that the differential replay, the property check and the
declared invariants all ran. A target the policy marks impure is never
property-checked, so its versions count as not covered; a target with no
declared predicate has nothing to declare-check, so the declared part holds for it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

from envelope.policy import Policy

REQUIRED = ("differential", "property")


def job_checks(policy: Policy, target: str) -> dict[str, Any]:
    """ShadowJob keyword arguments: example count, deadline, impurity, declared predicates."""
    impure = any(fnmatch.fnmatchcase(target, glob) for glob in policy.invariants.impure)
    predicates = tuple(entry.predicate for entry in policy.invariants.declared
                       if fnmatch.fnmatchcase(target, entry.target))
    verification = policy.verification
    return {"examples": policy.properties.examples, "deadline_ms": policy.properties.deadline_ms,
            "impure": impure, "invariants": predicates,
            "search_seconds": 0.0 if impure else verification.search_seconds,
            "symbolic_seconds": 0.0 if impure else verification.symbolic_seconds,
            "memoise": verification.may_memoise(target)}


def evidence_checks(checks: Iterable[str], declared: int) -> dict[str, Any]:
    """The evidence fields a version keeps about its verification."""
    return {"checks": list(checks), "declared": declared}


def covered(evidence: Mapping[str, Any]) -> bool:
    """Whether differential, property and (if any were declared) invariant checks all ran."""
    checks = evidence.get("checks") or ()
    if not all(name in checks for name in REQUIRED):
        return False
    return bool(evidence.get("declared", 0) == 0 or "invariant" in checks)


def coverage(evidences: Iterable[Mapping[str, Any]]) -> float:
    """Share of the given versions' evidences that are :func:`covered`; 1.0 for none."""
    items = list(evidences)
    if not items:
        return 1.0
    return sum(covered(evidence) for evidence in items) / len(items)
