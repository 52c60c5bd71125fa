"""Which checks a target's candidates get under a policy, and how many active versions had them.

:func:`job_checks` turns the policy's ``properties`` and ``invariants`` sections
into the :class:`envelope.sandbox.ShadowJob` fields for one target.
:func:`unproven` asks the coverage gate (:mod:`invariants.proof`) about a shadow's
report, and :func:`coverage_evidence` is what a version keeps of it.
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

from daemon.synthesis.base import Candidate
from envelope.policy import Policy
from invariants.proof import Unproven, unexercised
from invariants.report import CodeCoverage, ShadowReport

REQUIRED = ("differential", "property")


def job_checks(policy: Policy, target: str) -> dict[str, Any]:
    """ShadowJob keyword arguments: example count, deadline, impurity, declared predicates,
    and the acceptance rule the benchmark times against."""
    impure = any(fnmatch.fnmatchcase(target, glob) for glob in policy.invariants.impure)
    predicates = tuple(entry.predicate for entry in policy.invariants.declared
                       if fnmatch.fnmatchcase(target, entry.target))
    verification = policy.verification
    return {"examples": policy.properties.examples, "deadline_ms": policy.properties.deadline_ms,
            "impure": impure, "invariants": predicates,
            "search_seconds": 0.0 if impure else verification.search_seconds,
            "symbolic_seconds": 0.0 if impure else verification.symbolic_seconds,
            "memoise": verification.may_memoise(target),
            "repeats": policy.acceptance.repeats, "min_speedup": policy.acceptance.min_speedup,
            "confidence": policy.acceptance.confidence}


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


def unproven(report: ShadowReport, candidate: Candidate, original: str) -> Unproven | None:
    """The candidate's code that no check ran and that is not excused; None when the
    report cannot say (the shadow failed, or found a difference before measuring)."""
    if report.status not in ("ok", "mismatch") or \
            (report.status == "mismatch" and report.coverage is None):
        return None
    return unexercised(report.coverage, report.original_coverage, candidate.source, original,
                       keeps_original=candidate.keeps_original)


def coverage_evidence(report: ShadowReport, gap: Unproven | None) -> dict[str, Any]:
    """What a version keeps about its coverage: lines and branches run, and what was not."""
    measured, original = report.coverage, report.original_coverage
    if measured is None:
        return {"measured": False, "unproven": gap.describe() if gap is not None else ""}
    return {"measured": True, **_ran(measured),
            "missing_lines": list(measured.missing_lines),
            "missing_branches": [list(pair) for pair in measured.missing_branches],
            "original": _ran(original) if original is not None else None,
            "unproven": gap.describe() if gap is not None else ""}


def _ran(coverage: CodeCoverage) -> dict[str, list[int]]:
    """``[ran, total]`` of lines and of branches."""
    return {"lines": [coverage.statements - len(coverage.missing_lines), coverage.statements],
            "branches": [coverage.branches - len(coverage.missing_branches),
                         coverage.branches]}
