"""``python -m bench.mutation``: the share of wrong versions of the demo targets the gate catches.

Every function of ``demo/logstats.py`` is mutated (see
:mod:`bench._mutants`: swapped operators and comparisons, off-by-one and changed
constants, dropped branches and statements, reordered statements), and each
mutant goes through the real gate: the static gate, the jailed shadow on a corpus
recorded from the running demo workload (differential replay, property checks,
declared invariants, benchmark, second hash seed with the calls shuffled, the
state watch, the symbolic diff), the coverage gate (``unproven``) and the
acceptance decision, all under ``config/envelope.yaml``.

Rare-branch mutants (:mod:`bench._rare`) are judged too: a guard ahead of the
original body, or ahead of a rule's faster rewrite, that returns a wrong result
only on inputs the recorded calls never or rarely meet. And every candidate is
judged a second time under the same policy with the proof-coverage steps off
(:func:`bench._gate.without_new_steps`), so the result says what those steps
add, in kills and in shadow seconds (:mod:`bench._steps`). The rules' own
rewrites of each target run through both as controls: correct candidates that
should pass.

Each mutant ends one of three ways (:func:`outcome`):

- **killed**: the static gate or the shadow told it apart from the original;
- **rejected only as not faster**: the shadow found no difference and the
  acceptance statistics turned it away (no faster, or too few measurements to
  say). Reported apart and *not* counted as killed: the gate did not notice the
  wrong behaviour, and a mutant that happened to be faster would have passed;
- **accepted**: let through as faster.

- ``kill_score``: killed / tried, the headline, with the proof-coverage steps.
  Target: at least 0.95.
- ``kill_score_without_new_steps``, ``rare_kill_score``,
  ``rare_kill_score_without_new_steps``: the same share for the sampled existing
  mutants without the steps, and for the rare-branch mutants with and without;
  ``details.steps`` says which step caught each.
- ``shadow_seconds_added_by_new_steps`` (every candidate) and ``..._passing`` (the
  controls): the median added shadow seconds per candidate, a proxy for what the
  steps add to a synthesis cycle.
- ``rejected_only_as_not_faster`` and ``accepted``: counts, with their share.
- ``kill_score_without_likely_equivalent`` / ``..._without_judged_equivalent``:
  the kill score leaving out survivors that may not be wrong at all (below).

Mutants the shadow could not tell from the original are listed with their diffs
under ``survivors``, each then compared in this process on 1000 more generated
inputs: a survivor in which that finds no difference is marked
``likely_equivalent``, for a person to confirm from the diff.

All mutants, judged both ways, take well over half an hour on a 2-core machine,
so by default a stratified sample of each kind (every target represented in
proportion, seeded) is tried; ``--all`` tries every one. The JSON says which.
``--rescore`` recomputes the metrics of an existing ``bench/results/mutation.json``
from the verdicts it records, without running a mutant. The kill score is also written as the gauge
``selfmod_mutation_score_ratio`` to ``bench/results/mutation.prom`` (Prometheus
text format, for node_exporter's textfile collector): the number belongs to the
gate's code, not to a running daemon.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, write_to_textfile

from bench._common import RESULTS, metric, progress, result, workdir, write_result
from bench._gate import (
    Gate,
    Probe,
    Verdict,
    default_policy,
    demo_targets,
    probe_equivalence,
    record_demo_corpora,
    without_new_steps,
)
from bench._mutants import Mutant, mutants
from bench._rare import RareMutant, rare_mutants
from bench._steps import outcome, score_steps, verdict_row
from daemon.metrics import mutation_score_gauge
from daemon.synthesis.base import ProposalRequest
from daemon.synthesis.rules.proposer import RulesProposer
from daemon.target_info import module_source
from envelope.policy import Policy
from invariants.targets import original_source

__all__ = ["main", "outcome", "rescore", "sample"]

NAME = "mutation"
M = TypeVar("M", bound=Mutant)
TARGET_SCORE = 0.95
# A person's reading of survivors seen in earlier runs (the probe can only say that it
# found no difference). Keyed by target function and mutant description.
JUDGED: dict[tuple[str, str], str] = {
    ("parse_line", "swapped with the next: if not (method.startswith('\"') and "
                   "proto.endswith('\"') and …"):
        "equivalent: two side-effect-free checks that both return None, in the other order",
    ("parse_line", "swapped with the next: if not (status.isdecimal() and size.isdecimal() "
                   "and latency…"):
        "equivalent: two side-effect-free checks that both return None, in the other order",
    ("process_batch", "swapped with the next: sessions = dedupe_sessions(records)"):
        "equivalent: two independent pure calls in the other order",
    ("top_k", "swapped with the next: items = list(counts.items())"):
        "equivalent: two independent assignments in the other order",
    ("top_k", "swapped with the next: top.append(best)"):
        "equivalent: appending best to top and removing it from items commute",
    ("dedupe_sessions", "swapped with the next: for rec in records:"):
        "equivalent: result = [] moved above an independent loop",
    ("latency_distribution", "swapped with the next: if not values:"):
        "equivalent: curve = [] moved above the early return",
    ("latency_percentiles", "swapped with the next: for name, per_mille in QUANTILES:"):
        "equivalent: peak = values[0] moved above an independent loop",
    ("latency_percentiles", "0 -> -1"):
        "equivalent: the maximum is found from values[-1] instead of values[0]",
    ("latency_percentiles", "> -> >="):
        "equivalent: equal integers replace the running maximum by an equal value",
    ("percentile", "swapped with the next: if not values:"):
        "equivalent: sorted([]) succeeds before the same ValueError",
    ("count_by_method_class", "swapped with the next: reads = 0"):
        "equivalent: two independent assignments in the other order",
    ("latency_distribution", "1 -> 0"):
        "equivalent: every per_mille used is at least 10, so rank >= 1 for a non-empty list",
    ("latency_percentiles", "1 -> 0"):
        "equivalent: every per_mille used is at least 500, so rank >= 1 for a non-empty list",
    ("latency_distribution", "999 -> 998"):
        "NOT equivalent: differs at per_mille 999 for n % 1000 == 999 values; a list of 999 "
        "values is among the systematic inputs since the code's constants size them",
    ("latency_percentiles", "999 -> 998"):
        "NOT equivalent: differs at per_mille 999 for n % 1000 == 999 values",
    ("percentile", "999 -> 998"):
        "NOT equivalent: differs when per_mille * n % 1000 == 1, e.g. per_mille 1 with 1001 "
        "values",
    ("latency_percentiles", "swapped with the next: if not values:"):
        "equivalent: result = {} moved above the early return",
    ("parse_batch", "swapped with the next: for line in lines:"):
        "equivalent: records = [] moved above an independent loop",
    ("parse_line", "swapped with the next: if not (stamp.startswith('[') and "
                   "stamp.endswith(']')):"):
        "equivalent: two side-effect-free checks that both return None, in the other order",
    ("parse_line", "swapped with the next: if not session.startswith('sid='):"):
        "equivalent: segments = [] moved below a check that returns None",
    ("parse_line", "'sid=' -> 'sid'"):
        "NOT equivalent: a session field like 'sidX1' is refused by the original and parsed "
        "by the mutant; no recorded or generated line had one",
    ("slowest_endpoints", "0 -> 1"):
        "NOT equivalent: ties in p90 are broken by the mean instead of the name; the "
        "recorded batches had no tie and 50 generated inputs found none",
    ("slowest_endpoints", "0 -> -1"):
        "NOT equivalent: ties in p90 are broken by the p90 itself, i.e. not at all",
    ("slowest_endpoints", "swapped with the next: for rec in records:"):
        "equivalent: rows = [] moved above an independent loop",
    ("total_bytes", "swapped with the next: for rec in records:"):
        "equivalent: total = 0 moved above an independent loop",
    ("unique_visitors", "swapped with the next: for rec in records:"):
        "equivalent: visitors = [] moved above an independent loop",
    ("slowest_endpoints", "900 -> 899"):
        "NOT equivalent: the p90 rank differs for an endpoint with n >= 109 requests and "
        "n % 10 == 9; caught by replay when batches are 2500 lines (the demo's size), "
        "survived with 500-line batches",
}


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.mutation")
    parser.add_argument("--max-mutants", type=int, default=150,
                        help="stratified sample size of the operator mutants (default 150)")
    parser.add_argument("--max-rare", type=int, default=60,
                        help="stratified sample size of the rare-branch mutants (default 60)")
    parser.add_argument("--no-controls", action="store_true",
                        help="do not judge the rules' own rewrites")
    parser.add_argument("--all", action="store_true", help="try every mutant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="shadows at once")
    parser.add_argument("--batch-size", type=int, default=2500,
                        help="log lines per demo batch while recording (default 2500, "
                             "the demo's own)")
    parser.add_argument("--pool-size", type=int, default=8)
    parser.add_argument("--budget-seconds", type=float, default=280.0,
                        help="stop starting mutants after this long")
    parser.add_argument("--rescore", action="store_true",
                        help="recompute the metrics of bench/results/mutation.json from the "
                             "verdicts it records; runs no mutant")
    return parser.parse_args(argv)


def sample(by_target: dict[str, list[M]], size: int, seed: int) -> dict[str, list[M]]:
    """About ``size`` mutants, each target in proportion to its count and at least one."""
    total = sum(len(items) for items in by_target.values())
    if size >= total:
        return by_target
    rng = random.Random(seed)
    return {target: sorted(rng.sample(items, min(len(items), max(1, round(size * len(items)
                                                                           / total)))),
                           key=items.index)
            for target, items in by_target.items()}


Job = tuple[str, str, Mutant]  # set (existing | rare | control), target, candidate


def main(argv: list[str] | None = None) -> int:
    options = _options(argv)
    if options.rescore:
        path = RESULTS / f"{NAME}.json"
        data = rescore(json.loads(path.read_text()))
        write_result(data)
        _write_gauge(_headline(data))
        progress(NAME, f"kill score {_headline(data)}, recomputed; wrote {path}")
        return 0
    started, load_before = time.monotonic(), os.getloadavg()
    policy = default_policy()
    work = Path(tempfile.mkdtemp(prefix="mutation-", dir=workdir()))
    (work / "shadows").mkdir()
    corpora = record_demo_corpora(NAME, work / "corpus", policy, batch_size=options.batch_size,
                                  pool_size=options.pool_size)
    functions = demo_targets()
    originals = {target: original_source(fn) for target, fn in functions.items()}
    rewrites = {target: rule_rewrite(target, fn, originals[target], policy)
                for target, fn in functions.items()}
    generated = {target: mutants(source) for target, source in originals.items()}
    rare = {target: rare_mutants(fn, [r.load_args() for r in corpora[target].records],
                                 {"original": originals[target], **rewrites[target]})
            for target, fn in functions.items()}
    total = sum(len(items) for items in generated.values())
    total_rare = sum(len(items) for items in rare.values())
    chosen = generated if options.all else sample(generated, options.max_mutants, options.seed)
    chosen_rare = rare if options.all else sample(rare, options.max_rare, options.seed)
    controls: list[Job] = [] if options.no_controls else [
        ("control", target, Mutant("control", f"{label}'s rewrite, unmutated", 1, source))
        for target, bodies in rewrites.items() for label, source in bodies.items()]
    mixed: list[Job] = [("existing", target, mutant) for target, items in chosen.items()
                        for mutant in items]
    mixed += [("rare", target, mutant) for target, items in chosen_rare.items()
              for mutant in items]
    random.Random(options.seed).shuffle(mixed)  # a budget cut leaves every kind sampled
    jobs = controls + mixed
    progress(NAME, f"{total} mutants and {total_rare} rare-branch mutants of {len(generated)} "
                   f"targets, {len(controls)} controls; trying {len(jobs)}, each with and "
                   f"without the proof-coverage steps")
    gates = {"with": Gate(policy, work / "corpus", work / "shadows"),
             "without": Gate(without_new_steps(policy), work / "corpus", work / "shadows")}
    deadline = started + options.budget_seconds
    verdicts: dict[int, dict[str, Verdict]] = {}

    def judge(index: int) -> None:
        if time.monotonic() > deadline:
            return
        kind, target, mutant = jobs[index]
        judged = {config: gate.judge(target, mutant.source, originals[target],
                                     keeps_original=kind == "control")
                  for config, gate in gates.items()}
        verdicts[index] = judged
        progress(NAME, f"[{len(verdicts)}/{len(jobs)}] {kind} {target.partition(':')[2]} "
                       f"{mutant.operator} line {mutant.line} ({mutant.description}): "
                       + ", ".join(f"{config} {_said(verdict)}"
                                   for config, verdict in judged.items()))

    with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
        list(pool.map(judge, range(len(jobs))))
    probes: dict[int, Probe] = {}
    for index, judged in sorted(verdicts.items()):
        kind, target, mutant = jobs[index]
        if kind == "existing" and judged["with"].stage in ("accept", "accepted"):
            probes[index] = probe = probe_equivalence(target, mutant.source, corpora[target])
            progress(NAME, f"survivor {target.partition(':')[2]} {mutant.description}: "
                           + (f"differs on {probe.difference[:100]}" if probe.difference else
                              f"likely equivalent (no difference in {probe.inputs} inputs)"))
    counts = {"existing": (total, sum(map(len, chosen.values()))),
              "rare": (total_rare, sum(map(len, chosen_rare.values()))),
              "control": (len(controls), len(controls))}
    data = _result(options, jobs, verdicts, probes, originals, corpora, counts, started,
                   load_before)
    path = write_result(data)
    _write_gauge(_headline(data))
    progress(NAME, f"kill score {_headline(data)} over {len(verdicts)} candidates; "
                   + "; ".join(f"{m['metric']} {m['value']}" for m in data["metrics"][5:])
                   + f"; wrote {path}")
    return 0


def rule_rewrite(target: str, fn: Any, source: str, policy: Policy) -> dict[str, str]:
    """The rules proposer's first (usually fastest: composed) rewrite of ``fn``, by origin;
    empty when no rule applies."""
    request = ProposalRequest(target=target, source=source, module_source=module_source(fn),
                              allowed_imports=tuple(policy.static.allowed_imports))
    candidates = RulesProposer().propose(request)
    return {candidates[0].origin: candidates[0].source} if candidates else {}


def _said(verdict: Verdict) -> str:
    return (f"{'rejected' if verdict.rejected else 'ACCEPTED'} "
            f"({verdict.stage}/{verdict.caught_by or verdict.reason})")


def _result(options: argparse.Namespace, jobs: list[Job], verdicts: dict[int, dict[str, Verdict]],
            probes: dict[int, Probe], originals: dict[str, str], corpora: dict[str, Any],
            counts: dict[str, tuple[int, int]], started: float,
            load_before: tuple[float, float, float]) -> dict[str, Any]:
    per_target: dict[str, dict[str, Any]] = {}
    judged: list[dict[str, Any]] = []
    for index, (kind, target, mutant) in enumerate(jobs):
        verdict = verdicts.get(index)
        if verdict is not None:
            judged.append(_judged_row(kind, target, mutant, verdict))
        if kind != "existing":
            continue
        entry = per_target.setdefault(target, {
            "mutants": 0, "tried": 0, "caught_by": collections.Counter(),
            "caught_by_without_new_steps": collections.Counter(),
            "corpus_calls": len(corpora[target].records), "survivors": []})
        entry["mutants"] += 1
        if verdict is None:
            continue
        entry["tried"] += 1
        entry["caught_by"][verdict["with"].caught_by or "nothing"] += 1
        entry["caught_by_without_new_steps"][verdict["without"].caught_by or "nothing"] += 1
        probe = probes.get(index)
        if probe is not None:
            entry["survivors"].append({
                "operator": mutant.operator, "description": mutant.description,
                "line": mutant.line, "gate": verdict["with"].stage,
                "verdict": verdict["with"].reason,
                "likely_equivalent": not probe.difference, "probe_inputs": probe.inputs,
                "judged": _judged(target, mutant.description),
                "difference_found_later": probe.difference,
                "diff": mutant.diff(originals[target])})
    for entry in per_target.values():
        entry["caught_by"] = dict(entry["caught_by"])
        entry["caught_by_without_new_steps"] = dict(entry["caught_by_without_new_steps"])
    total, selected = counts["existing"]
    total_rare, selected_rare = counts["rare"]
    tried = {kind: sum(1 for index in verdicts if jobs[index][0] == kind)
             for kind in ("existing", "rare", "control")}
    sampled = not options.all and selected < total
    sampled_rare = not options.all and selected_rare < total_rare
    parameters = {
        "mutants_generated": total, "mutants_selected": selected,
        "mutants_tried": tried["existing"], "sampled": sampled,
        "sampling": (f"stratified by target, {selected} of {total}, seed {options.seed}"
                     if sampled else "every mutant"),
        "rare_mutants_generated": total_rare, "rare_mutants_selected": selected_rare,
        "rare_mutants_tried": tried["rare"], "rare_sampled": sampled_rare,
        "rare_sampling": (f"stratified by target, {selected_rare} of {total_rare}, seed "
                          f"{options.seed}" if sampled_rare else "every rare-branch mutant"),
        "controls": counts["control"][0], "controls_tried": tried["control"],
        "configurations": {"with": "config/envelope.yaml as it is",
                           "without": "the same with verification.require_full_coverage "
                                      "false, symbolic_seconds 0, search_seconds 0 and "
                                      "memoise ['*'] (no state watch)"},
        "stopped_early": len(verdicts) < len(jobs), "budget_seconds": options.budget_seconds,
        "workers": options.workers, "demo_batch_size": options.batch_size,
        "demo_pool_size": options.pool_size, "policy": "config/envelope.yaml",
    }
    details = {"targets": per_target, "judged": judged,
               "survivors_note": "mutants the shadow found no difference in (turned away, if "
                                 "at all, only for not being faster): judge each diff for "
                                 "equivalence"}
    data = result(NAME, "Mutants of every demo target through the real gate, with and without "
                        "the proof-coverage steps", [],
                  parameters, details, started=started, load_before=load_before)
    return _score(data)


def _judged_row(kind: str, target: str, mutant: Mutant, verdict: dict[str, Verdict]
                ) -> dict[str, Any]:
    row: dict[str, Any] = {"set": kind, "target": target, "operator": mutant.operator,
                           "description": mutant.description, "line": mutant.line,
                           **{config: verdict_row(v) for config, v in verdict.items()}}
    if isinstance(mutant, RareMutant):
        row.update(condition=mutant.condition, body=mutant.body, trigger=mutant.trigger,
                   met_by=f"{mutant.met_by} of {mutant.calls} recorded calls",
                   source=mutant.source)
    return row


def rescore(data: dict[str, Any]) -> dict[str, Any]:
    """A mutation result with its metrics and tallies recomputed from the verdicts it records.

    Reads each target's ``caught_by`` counts and survivors (the judgements are
    refreshed from :data:`JUDGED`); the run's parameters, machine and timings stay.
    """
    details = data["details"]
    for target, entry in details["targets"].items():
        entry.pop("rejected", None)  # the old any-stage count, which took not-faster as caught
        for survivor in entry["survivors"]:
            survivor["judged"] = _judged(target, survivor["description"])
    parameters = {**data["parameters"],
                  "rescored": "metrics recomputed from this run's recorded verdicts at "
                              + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    return _score({**data, "parameters": parameters})


def _score(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with per-target tallies, the overall ``outcomes`` and the metrics filled in."""
    targets = data["details"]["targets"]
    totals: collections.Counter[str] = collections.Counter()
    caught: collections.Counter[str] = collections.Counter()
    for entry in targets.values():
        tally = collections.Counter({"killed": 0, "not_faster": 0, "accepted": 0})
        for caught_by, count in entry["caught_by"].items():
            tally[outcome(caught_by)] += count
        entry.update(tally)
        entry["score"] = round(tally["killed"] / entry["tried"], 4) if entry["tried"] else None
        totals.update(tally)
        caught.update(entry["caught_by"])
    tried = sum(entry["tried"] for entry in targets.values())
    killed = totals["killed"]
    survivors = [s for entry in targets.values() for s in entry["survivors"]]
    equivalent = sum(s["likely_equivalent"] for s in survivors)
    judged_equivalent = sum(s["likely_equivalent"] and s["judged"].startswith("equivalent")
                            for s in survivors)
    score = _ratio(killed, tried)
    metrics = [
        metric("kill_score", score, "ratio", target=f">= {TARGET_SCORE}",
               met=score is not None and score >= TARGET_SCORE, killed=killed, tried=tried,
               note="operator mutants the gate turned away for a reason other than speed, "
                    "with the proof-coverage steps (static gate, shadow checks, symbolic "
                    "diff, state watch, coverage gate); those turned away only as not faster "
                    "are not counted. The rare-branch mutants are scored apart "
                    "(rare_kill_score)"),
        metric("rejected_only_as_not_faster", totals["not_faster"], "mutants",
               share=_ratio(totals["not_faster"], tried),
               note="the shadow found no difference; the acceptance statistics turned them "
                    "away (see survivors)"),
        metric("accepted", totals["accepted"], "mutants", share=_ratio(totals["accepted"], tried),
               note="let through as faster (see survivors)"),
        metric("kill_score_without_likely_equivalent", _ratio(killed, tried - equivalent),
               "ratio", likely_equivalent=equivalent,
               note="as kill_score, leaving out the survivors in which a search of many more "
                    "inputs found no difference"),
        metric("kill_score_without_judged_equivalent", _ratio(killed, tried - judged_equivalent),
               "ratio", judged_equivalent=judged_equivalent,
               note="as kill_score, leaving out the survivors a person judged equivalent (see "
                    "JUDGED in bench/mutation.py and each survivor's 'judged')"),
    ]
    details = {**data["details"], "caught_by": dict(caught), "outcomes": dict(totals)}
    if "judged" in details:  # results from before the rare-branch mutants have no rows
        steps, details["steps"] = score_steps(details["judged"])
        metrics += steps
    return {**data, "metrics": metrics, "details": details}


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole > 0 else None


def _judged(target: str, description: str) -> str:
    return JUDGED.get((target.partition(":")[2], description), "not judged yet")


def _headline(data: dict[str, Any]) -> float | None:
    return next(m["value"] for m in data["metrics"] if m["metric"] == "kill_score")


def _write_gauge(score: float | None, results: Path = RESULTS) -> None:
    if score is None:
        return
    registry = CollectorRegistry()
    mutation_score_gauge(registry).set(score)
    write_to_textfile(str(results / f"{NAME}.prom"), registry)


if __name__ == "__main__":
    raise SystemExit(main())
