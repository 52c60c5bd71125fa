"""Which checks the policy asks of a target, and the verification coverage of active versions."""

from __future__ import annotations

from daemon.verification import coverage, covered, evidence_checks, job_checks
from envelope.policy import parse_policy

POLICY = """
version: 3
properties:
  examples: 120
  deadline_ms: 400
invariants:
  declared:
    - {target: "shop.pricing:*", predicate: "shop.checks:total_not_negative"}
    - {target: "shop.pricing:Cart.total", predicate: "shop.checks:rounded"}
    - {target: "shop.tax:*", predicate: "shop.checks:taxed"}
  impure: ["shop.audit:*"]
acceptance:
  min_speedup: 1.2
  confidence: 0.9
  repeats: 11
verification:
  search_seconds: 7
  symbolic_seconds: 9
  memoise: ["shop.pricing:*"]
"""


def test_the_policy_becomes_the_shadow_job_fields() -> None:
    """Examples, deadline, predicates, impurity, the verification budgets and memoising, and
    the acceptance rule the benchmark stops on.

    An impure target gets no generated inputs, so no search and no symbolic diff either.
    """
    policy = parse_policy(POLICY, "envelope.yaml")
    assert job_checks(policy, "shop.pricing:Cart.total") == {
        "examples": 120, "deadline_ms": 400, "impure": False,
        "invariants": ("shop.checks:total_not_negative", "shop.checks:rounded"),
        "search_seconds": 7.0, "symbolic_seconds": 9.0, "memoise": True,
        "repeats": 11, "min_speedup": 1.2, "confidence": 0.9}
    audit = job_checks(policy, "shop.audit:record")
    assert audit["impure"] is True and audit["invariants"] == ()
    assert (audit["search_seconds"], audit["symbolic_seconds"], audit["memoise"]) == (0, 0, False)


def test_a_version_is_covered_when_all_its_checks_ran() -> None:
    """Differential and property always, the invariant check when predicates were declared."""
    assert covered(evidence_checks(["differential", "property", "benchmark"], 0))
    assert covered(evidence_checks(["differential", "invariant", "property", "benchmark"], 2))
    assert not covered(evidence_checks(["differential", "property", "benchmark"], 1))
    assert not covered(evidence_checks(["differential", "benchmark"], 0))
    assert not covered({"speedup": 1.4})  # evidence from before checks were recorded


def test_coverage_is_the_share_of_covered_versions() -> None:
    """Two of four versions covered is 0.5; no active version leaves nothing uncovered."""
    full = evidence_checks(["differential", "property", "benchmark"], 0)
    replay_only = evidence_checks(["differential", "benchmark"], 0)
    assert coverage([full, replay_only, full, replay_only]) == 0.5
    assert coverage([]) == 1.0
