"""The shadow worker: the child process that replays a corpus on a candidate.

Started by :class:`envelope.sandbox.Sandbox` as::

    python -s -P -m invariants.shadow --result-fd N --tmpdir DIR --mode full|replay
           --cpu-seconds S --memory-mb M --file-size-mb F --open-files N --processes N
           --result-bytes B

(the limits options are :meth:`invariants.job.ShadowLimits.to_argv`; the job on
stdin is :meth:`invariants.job.ShadowJob.to_json`)

with an environment built from scratch by the parent (``PATH``, ``LANG``,
``PYTHONHASHSEED``, ``PYTHONDONTWRITEBYTECODE``). ``-s -P`` is ``-I`` without
``-E``: ``-E`` would ignore ``PYTHONHASHSEED``, which is the one variable the
shadow needs (it pins the hash seed, and the second run changes it); since the
parent passes no other variable, nothing else from the environment can steer it.

Order matters: resource limits, working directory and the tripwire come first,
before the job (and the candidate in it) is read from stdin; declared predicates
are imported and property-check inputs drawn (Hypothesis, seeded, no database,
in the private tmp dir) before the tripwire is armed and any candidate code runs. The report goes to
the result pipe as one JSON document (see :mod:`invariants.report`); stdout and
stderr are only captured by the parent as tails, for diagnosis.
"""

from __future__ import annotations

import _thread
import argparse
import collections
import contextlib
import functools
import inspect
import io
import itertools
import os
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invariants.accept import MIN_PAIRS, settled
from invariants.bench import Batch, Settled, paired_benchmark
from invariants.declared import invariant_observer, load_predicates
from invariants.errors import InvariantLoadError
from invariants.finish import make_finisher
from invariants.guard import harness_modules, make_guard
from invariants.job import HASH_SEED_MAX, MAX_JOB_BYTES, ShadowJob, ShadowLimits
from invariants.measure import CoverageProbe
from invariants.proof import unexercised
from invariants.properties import check_generated, generated_inputs
from invariants.replay import (
    CallBounds,
    CodeSwitch,
    LimitReached,
    LoadArgs,
    PairRunner,
    ReplayResult,
    call,
    replay,
    shuffled_order,
)
from invariants.report import CodeCoverage
from invariants.search import MAX_SEEDS, SearchPlan, from_literal, plan_search, search
from invariants.statecheck import StateWatch
from invariants.targets import Target, TargetError, compile_function, make_function, resolve
from invariants.tripwire import Tripwire
from snapshots.corpus import Corpus, CorpusError, read_corpus
from snapshots.found import FoundError, read_found

# Imported before the candidate exists, so that using them later triggers no import.
PRELOAD = ("bisect", "copy", "dataclasses", "datetime", "decimal", "enum", "fractions",
           "functools", "hashlib", "heapq", "math", "operator", "random", "re", "statistics",
           "string", "struct", "textwrap", "typing", "unicodedata", "array")


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m invariants.shadow")
    parser.add_argument("--result-fd", type=int, required=True)
    parser.add_argument("--tmpdir", required=True)
    parser.add_argument("--mode", choices=("full", "replay"), default="full")
    ShadowLimits.add_arguments(parser)
    return parser.parse_args(argv)


def apply_limits(options: ShadowLimits) -> None:
    """Resource limits on this process. RLIMIT_NPROC binds only a non-root user."""
    options.apply()


Runner = Callable[[ShadowJob, Tripwire, argparse.Namespace, ShadowLimits,
                   list[Callable[[], list[str]]]], dict[str, Any]]


def serve(argv: list[str] | None, run: Runner, *, harness: str = "shadow",
          prepare: Callable[[], object] | None = None) -> int:
    """A jailed child's life: limits, working dir, tripwire, finisher, then ``run`` the job.

    Shared by the shadow and the symbolic diff (:mod:`invariants.symbolic`);
    ``prepare`` runs after the tripwire is installed and before the job is read.
    """
    options = _options(argv)
    limits = ShadowLimits.from_args(options)
    apply_limits(limits)
    os.chdir(options.tmpdir)
    os.umask(0o077)
    sys.dont_write_bytecode = True
    for name in PRELOAD:
        __import__(name)
    tripwire = Tripwire(options.tmpdir, read_roots=())
    tripwire.install()
    # Made before any candidate exists, and held only here: the report is written by
    # code that no rebinding of module attributes can reach (see invariants.guard).
    finish = make_finisher(options.result_fd, limits.result_bytes, tripwire.sightings)
    guards: list[Callable[[], list[str]]] = []
    nonce = ""
    fields: dict[str, Any]
    try:
        if prepare is not None:
            prepare()
        job, nonce = ShadowJob.from_json(sys.stdin.buffer.read(MAX_JOB_BYTES))
        sys.stdin = io.StringIO()
        fields = run(job, tripwire, options, limits, guards)
    except (LimitReached, MemoryError) as exc:
        where = "in a call" if isinstance(exc, LimitReached) else "in the harness"
        fields = {"status": "limit", "reason": f"memory limit of {limits.memory_mb} MiB "
                                               f"reached {where} (MemoryError)"}
    except BaseException as exc:  # the harness reports its own failures instead of dying
        fields = {"status": "error", "reason": f"{harness} harness failed: "
                                               f"{type(exc).__name__}: {str(exc)[:500]}"}
    finish(nonce, fields, guards[0]() if guards else [])


def main(argv: list[str] | None = None) -> int:
    return serve(argv, lambda job, tripwire, options, _, guards:
                 run_job(job, tripwire, options.mode, guards))


def _hash_seed() -> int:
    seed = os.environ.get("PYTHONHASHSEED", "")
    return int(seed) if seed.isdigit() else HASH_SEED_MAX


def load_target(job: ShadowJob) -> tuple[Target, Corpus, Any] | dict[str, Any]:
    """The job's target, its corpus and the function; or the error report's fields."""
    target = Target.parse(job.target)
    for entry in reversed(job.sys_path):
        sys.path.insert(0, entry)
    if _hash_seed() >= HASH_SEED_MAX:
        return {"status": "error", "reason": "PYTHONHASHSEED is not pinned in the shadow"}
    try:
        corpus = read_corpus(Path(job.corpus_path))
    except CorpusError as exc:
        return {"status": "error", "reason": str(exc)}
    if corpus.target != str(target):
        return {"status": "error", "reason": f"corpus is for {corpus.target}, not {target}"}
    try:
        func = resolve(target)
    except TargetError as exc:
        return {"status": "error", "reason": f"cannot load the target: {exc}"}
    return target, corpus, func


def run_job(job: ShadowJob, tripwire: Tripwire, mode: str,
            guards: list[Callable[[], list[str]]]) -> dict[str, Any]:
    """Load the target and the candidate, replay, and (in ``full`` mode) check generated
    inputs and benchmark. Declared invariants are checked on every call compared."""
    phases = Phases()
    loaded = load_target(job)
    if isinstance(loaded, dict):
        return loaded
    target, corpus, func = loaded
    original_code = func.__code__
    # Coverage is measured in the full run only: the other runs replay the same calls.
    probe = CoverageProbe(os.getcwd(), job.candidate_source, func,
                          measure_original=job.original_coverage) if mode == "full" else None
    try:
        candidate_code = compile_function(
            job.candidate_source, func,
            filename=probe.path if probe is not None else f"<candidate {target}>")
        make_function(candidate_code, func)  # the live swap's checks: closure, defaults
    except (TargetError, SyntaxError, ValueError) as exc:
        return {"status": "error", "reason": f"cannot build the candidate: {exc}"}
    try:
        predicates = load_predicates(list(job.invariants))
    except InvariantLoadError as exc:
        return {"status": "error", "reason": str(exc)}
    # Drawn now, while no candidate code has run (see invariants.strategies).
    blobs, notes = generated_inputs(job, func, corpus.records) if mode == "full" else ([], [])
    plan = _search_plan(job, corpus.records, candidate_code, original_code, func.__doc__) \
        if probe is not None and not job.impure else None
    original_source = _source_of(func) if plan is not None else ""
    tripwire.read_roots = _read_roots()
    refresh, changes = make_guard(harness_modules())
    guards.append(changes)
    # A candidate keeping state between calls (a cache) must not pass, nor look fast in
    # the timing loop: the watch reads audited attributes, so it is made before arming.
    state = None if job.memoise else StateWatch(func)
    phases.mark("load")
    tripwire.arm()
    switch = CodeSwitch(func, original_code, candidate_code, tripwire, measure=probe)
    observe = invariant_observer(predicates, tripwire) if predicates else None
    def rerun() -> list[Callable[[], object]]:
        """The original on every input the checks ran (see CoverageProbe.cover_original)."""
        return [functools.partial(_run_original, switch, load_args) for load_args in ran]

    def measured() -> contextlib.AbstractContextManager[None]:
        return probe.measuring(tripwire) if probe is not None else contextlib.nullcontext()

    ran: list[LoadArgs] = []  # every input a check ran, for the original's coverage
    with measured():
        result = replay(switch, corpus.records, tripwire, CallBounds(),
                        thread_count=_thread._count, guard=(refresh, changes), observe=observe,
                        state=state, order=shuffled_order(len(corpus.records), job.shuffle_seed),
                        inputs=ran)
    phases.mark("replay")
    checks = _ran(result, ["differential", *(["invariant"] if predicates else [])])
    fields = {**_replay_fields(result), "checks": checks, "notes": notes,
              "phases": phases.seconds}
    if result.status != "ok" or mode != "full" or not corpus.records:
        return fields
    if blobs:
        with measured():
            generated = check_generated(
                PairRunner(switch, tripwire, CallBounds(), _thread._count, (refresh, changes),
                           state=state, inputs=ran),
                blobs, deadline_ms=job.deadline_ms, observe=observe)
        phases.mark("property")
        fields["examples"] = generated.examples
        fields["checks"] = checks + _ran(generated.result, ["property"])
        if generated.slow_originals:
            notes.append(f"{generated.slow_originals} generated inputs dropped: the original "
                         f"took longer than the {job.deadline_ms} ms deadline")
        if generated.result.status != "ok":
            return {**fields, "status": generated.result.status,
                    "reason": generated.result.reason,
                    "mismatches": _evidence(generated.result)}
    if probe is not None and plan is not None and (job.search_seconds > 0 or plan.found):
        searched = search(
            plan, PairRunner(switch, tripwire, CallBounds(), _thread._count, (refresh, changes),
                             state=state, inputs=ran),
            probe, tripwire, job.search_seconds, deadline_ms=job.deadline_ms, observe=observe,
            missing=_to_reach(probe, tripwire, job, original_source, rerun))
        phases.mark("search")
        fields["found"] = searched.kept
        if searched.result.status != "ok":
            return {**fields, "status": searched.result.status,
                    "reason": searched.result.reason, "mismatches": _evidence(searched.result)}
        if searched.tries:
            notes.append(f"input search: {searched.tries} inputs tried, {len(searched.kept)} "
                         f"reached candidate code nothing else ran"
                         + ("" if searched.complete else "; some code is still unexercised"))
    if probe is not None:
        fields["coverage"] = _final_coverage(probe, tripwire, rerun)
    threads = _thread._count()
    bench = paired_benchmark(
        _timer(switch, result.iterators),
        _batches(_bench_records(corpus.records, job.bench_calls), fresh=result.mutates),
        repeats=job.repeats, min_sample_seconds=job.min_sample_seconds,
        settled=_settled(job))
    phases.mark("benchmark")
    if tripwire.sightings or _thread._count() != threads or changes():
        return {**fields, "status": "forbidden",
                "reason": "the candidate attempted a forbidden operation while benchmarked"}
    return {**fields, "original_times": list(bench.original_times),
            "candidate_times": list(bench.candidate_times), "loops": bench.loops,
            "checks": [*fields["checks"], "benchmark"]}


def _run_original(switch: CodeSwitch, load_args: LoadArgs) -> None:
    args, kwargs = load_args()
    with switch.running("original") as fn:
        call(fn, args, kwargs, CallBounds())


def _final_coverage(probe: CoverageProbe, tripwire: Tripwire,
                    rerun: Callable[[], list[Callable[[], object]]]) -> dict[str, Any]:
    """The report's coverage: the candidate's, and the original's where it has a gap."""
    results = probe.results(tripwire)
    candidate = results.get("candidate")
    if candidate is None or not (candidate["missing_lines"] or candidate["missing_branches"]):
        return results
    probe.cover_original(rerun(), tripwire)
    return probe.results(tripwire)


def _to_reach(probe: CoverageProbe, tripwire: Tripwire, job: ShadowJob,
              original_source: str, rerun: Callable[[], list[Callable[[], object]]]
              ) -> tuple[set[int], set[tuple[int, int]]]:
    """The candidate's lines and branches not run yet that the gate would not excuse."""
    results = _final_coverage(probe, tripwire, rerun)
    candidate, original = results.get("candidate"), results.get("original")
    if candidate is None:
        return set(), set()
    with tripwire.disarmed():  # parses both sources: the harness's own pure work
        gap = unexercised(_coverage(candidate), _coverage(original) if original else None,
                          job.candidate_source, original_source,
                          keeps_original=job.original_coverage)
    if gap is None:
        return set(), set()
    return set(gap.lines), set(gap.branches)


def _coverage(data: dict[str, Any]) -> CodeCoverage:
    return CodeCoverage(data["statements"], tuple(data["missing_lines"]), data["branches"],
                        tuple((a, b) for a, b in data["missing_branches"]))


def _search_plan(job: ShadowJob, records: Any, candidate: Any, original: Any,
                 doc: str | None) -> SearchPlan:
    """The input search's seeds and constants, and the inputs found for this target before."""
    found = []
    if job.found_path:
        try:
            texts = read_found(Path(job.found_path))
        except FoundError:
            texts = []
        found = [item for item in map(from_literal, texts) if item is not None]
    seeds = []
    for record in records[:MAX_SEEDS]:
        try:
            seeds.append(record.load_args())
        except Exception:  # a record that does not load here is left out of the seeds
            continue
    return plan_search(seeds, found, candidate, original, doc, seed=job.property_seed)


def _source_of(func: Any) -> str:
    """The original's source, read before arming (for the gate's excuse, see _to_reach)."""
    try:
        return textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        return ""


def _ran(result: ReplayResult, names: list[str]) -> list[str]:
    """``names`` when the check went through every input (a mismatch included), else none."""
    return names if result.status in ("ok", "mismatch") else []


class Phases:
    """Seconds spent in each phase of a run, for the report (see report.PHASES).

    The clock is bound when the run starts, before any candidate code exists.
    """

    def __init__(self) -> None:
        self._clock = time.perf_counter
        self._last = self._clock()
        self.seconds: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        """``phase`` ended now; it began where the previous one ended."""
        now = self._clock()
        self.seconds[phase] = round(now - self._last, 6)
        self._last = now


def _settled(job: ShadowJob) -> Settled | None:
    """When timing may stop: once the pairs decide the job's acceptance rule either way."""
    if job.min_speedup <= 0:
        return None
    looks = max(1, job.repeats - MIN_PAIRS + 1)
    return lambda original, candidate: settled(original, candidate, job.min_speedup,
                                               job.confidence, looks)


def _bench_records(records: Any, limit: int) -> Any:
    """The calls the benchmark times: all were replayed, timing a prefix keeps runs short."""
    return records[:limit] if limit > 0 else records


def _read_roots() -> tuple[str, ...]:
    """Where code may be read from: the import path, the interpreter, loaded modules' dirs."""
    roots = {entry for entry in sys.path if entry and os.path.isabs(entry)}
    roots |= {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for module in list(sys.modules.values()):
        filename = getattr(module, "__file__", None)
        if isinstance(filename, str) and os.path.isabs(filename):
            roots.add(os.path.dirname(filename))
    return tuple(os.path.realpath(root) for root in sorted(roots))


def _replay_fields(result: ReplayResult) -> dict[str, Any]:
    return {"status": result.status, "reason": result.reason, "calls": result.calls,
            "mismatches": _evidence(result), "fingerprints": result.fingerprints}


def _evidence(result: ReplayResult) -> list[dict[str, Any]]:
    """Mismatches belong to a ``mismatch`` report only: a later forbidden act or error wins."""
    return result.mismatches if result.status == "mismatch" else []


class _NullOutput(io.TextIOBase):
    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)


def _timer(switch: CodeSwitch, consume: bool, items: int = CallBounds().iterator_items
           ) -> Any:
    """The timed region: one pass over a batch, output discarded, exceptions swallowed.

    Made after the replay's last state check, with the clock and helpers bound
    here, so a candidate rebinding ``time.perf_counter`` during the benchmark
    cannot fake its own timings (and the final state check reports it).
    """
    sink = _NullOutput()
    clock, drain, islice = time.perf_counter, collections.deque, itertools.islice

    def time_batch(which: str, batch: Batch) -> float:
        with switch.running(which) as fn, contextlib.redirect_stdout(sink):
            if consume:
                start = clock()
                for args, kwargs in batch:
                    try:  # noqa: SIM105 (a with-block per call would be timed too)
                        drain(islice(fn(*args, **kwargs), items), 0)
                    except Exception:
                        pass
                return clock() - start
            start = clock()
            for args, kwargs in batch:
                try:  # noqa: SIM105 (a with-block per call would be timed too)
                    fn(*args, **kwargs)
                except Exception:
                    pass
            return clock() - start

    return time_batch


def _batches(records: Any, *, fresh: bool) -> Any:
    """Argument copies for ``loops`` passes; one copy per call when the target mutates them."""

    def make_batch(loops: int) -> Batch:
        if fresh:
            return [record.load_args() for _ in range(loops) for record in records]
        return [record.load_args() for record in records] * loops

    return make_batch


if __name__ == "__main__":
    sys.exit(main())
