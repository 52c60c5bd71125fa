"""The hostile corpus through the whole pipeline, while a workload keeps calling the target.

Every candidate of ``tests/envelope/hostile/cases.py`` is proposed to a real
:class:`daemon.cycle.Cycle`: the recorder, the static gate, the sandbox with every
isolation layer this machine has, acceptance, the ledger and the swapper are the
daemon's own; only the proposer is a test double that returns the corpus. Then
every candidate the gate stopped is fed to the sandbox directly, gate bypassed, to
show that the jail holds it on its own. Afterwards the file system, the loopback
listeners and the process table are searched for any effect outside the jail.

The run happens once, in a module fixture; each test reads one aspect of it.
"""

from __future__ import annotations

import hashlib
import os
import random
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from daemon import events as ev
from daemon.config import CycleConfig
from daemon.cycle import CandidateOutcome, Cycle, CycleReport
from daemon.ledger import Ledger
from daemon.profiler import HotSpot
from daemon.swap import SwapManager
from daemon.synthesis.base import Candidate, ProposalRequest
from envelope.isolation import Isolation, probe_isolation
from envelope.policy import Policy, parse_policy
from envelope.sandbox import Sandbox, SandboxLimits, ShadowJob
from envelope.threads import StoppableThread
from invariants.report import ShadowReport
from invariants.targets import sha256_text
from snapshots import Snapshots
from tests.envelope.hostile import target
from tests.envelope.hostile.cases import CASES, SHADOW, STATIC, Case

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TARGET = "tests.envelope.hostile.target:total"
REPO = Path(target.__file__).resolve().parents[3]
# Tight limits keep the bombs short. On a loaded machine a shadow can reach the
# wall-clock deadline before anything else happens; that is containment too.
POLICY = """
version: 1
scope: {include: ["tests.envelope.hostile.target:*"]}
sandbox: {cpu_seconds: 2, memory_mb: 512, wall_seconds: 6}
acceptance: {repeats: 5, min_calls: 5}
recording: {calls: 50, timeout_seconds: 20}
"""
INPUTS: tuple[list[float], ...] = (
    [], [1, 2, 3], list(range(100)), [-5, 5, 7], [10**6, 1], [2.5, 0.5], [7] * 20,
    list(range(-50, 0)))
# Categories the issue names; the corpus must cover each of them.
CATEGORIES = {"builtins-dunders", "obfuscated-import", "file-write", "network", "process-spawn",
              "fork", "fork-bomb", "thread-bomb", "fd-bomb", "cpu-bomb", "memory-bomb",
              "c-level", "huge-output", "exit", "signal-parent", "recursion", "malicious-eq"}


class HostileProposer:
    """The proposer double: offers every hostile candidate, as a compromised model would."""

    name = "hostile"

    def __init__(self, sources: list[str]) -> None:
        self.sources = sources
        self.requests: list[ProposalRequest] = []

    def propose(self, request: ProposalRequest) -> list[Candidate]:
        self.requests.append(request)
        parent = sha256_text(request.source)
        return [Candidate(request.target, source, "llm:hostile", parent)
                for source in self.sources]


class TargetLoop(StoppableThread):
    """A workload thread: calls the live target on known inputs and checks every answer."""

    def __init__(self, n: int) -> None:
        super().__init__(f"hostile-workload-{n}", interval=0.001, on_error=self._failed)
        self.calls = self.items = self.wrong = self.errors = 0

    def _failed(self, _exc: BaseException) -> None:
        self.errors += 1

    def step(self) -> None:
        for xs in INPUTS:
            result = target.total(xs)
            self.calls += 1
            self.items += len(xs)
            if result != sum(xs):
                self.wrong += 1


@dataclass
class Run:
    """Everything the module fixture observed; the tests assert on it."""

    values: dict[str, object]
    sources: dict[str, str]
    report: CycleReport
    outcomes: dict[str, CandidateOutcome]
    rejected_events: dict[str, ev.CandidateRejected]
    direct: dict[str, ShadowReport]
    items: list[int]  # workload items at: start, after the cycle, after the direct runs
    wrong: int
    errors: int
    active: dict[str, str]
    code_unchanged: bool
    canary_entries: list[str]
    outside_exists: bool
    target_sha_before: str
    target_sha_after: str
    shadow_dirs_left: list[str]
    tcp_connections: int
    udp_datagrams: int
    children_before: set[int]
    children_after: set[int]
    marked_processes: list[str]
    decoy_status: str
    isolation: Isolation
    proposer_requests: int


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _marked(marker: str, tmp_root: Path) -> list[str]:
    """Processes anywhere on the machine that carry the run's marker or run in its tmp dirs."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if marker in cmdline or str(tmp_root) in cmdline:
            found.append(f"{proc.info['pid']}: {cmdline[:200]}")
    return found


def _pending_connections(listener: socket.socket) -> int:
    count = 0
    while select.select([listener], [], [], 0)[0]:
        conn, _ = listener.accept()
        conn.close()
        count += 1
    return count


def _pending_datagrams(udp: socket.socket) -> int:
    count = 0
    while select.select([udp], [], [], 0)[0]:
        udp.recvfrom(65536)
        count += 1
    return count


def _limits(policy: Policy) -> SandboxLimits:
    return SandboxLimits.from_policy(policy.sandbox)


def _wait_for_items(loops: list[TargetLoop], above: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = sum(loop.items for loop in loops)
        if items > above:
            return items
        time.sleep(0.05)
    return sum(loop.items for loop in loops)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("hostile")
    canary = root / "canary"
    canary.mkdir()
    shadows = root / "shadows"
    shadows.mkdir()
    digits = f"{random.randrange(10**8):08d}"
    outside = Path(f"/tmp/selfmod-hostile-{digits}")
    target_file = Path(target.__file__).resolve()
    target_sha = _sha(target_file)
    isolation = probe_isolation()
    policy = parse_policy(POLICY, "<hostile test policy>")

    tcp = socket.create_server(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    decoy = subprocess.Popen(["sleep", "600"])
    snapshots = Snapshots(root / "state")
    loops = [TargetLoop(n) for n in range(2)]
    try:
        values: dict[str, object] = {
            "canary": canary, "outside": outside, "target_file": target_file,
            "port": tcp.getsockname()[1], "udp_port": udp.getsockname()[1],
            "test_pid": os.getpid(), "test_pgid": os.getpgid(0), "decoy_pid": decoy.pid,
            "sleep": f"3000.{digits}",
        }
        sources = {case.name: case.source(**values) for case in CASES}
        children_before = {p.pid for p in psutil.Process().children(recursive=True)}
        for loop in loops:
            loop.start()
        items = [_wait_for_items(loops, 0)]

        swapper = SwapManager()
        original_code = swapper.function(TARGET).__code__
        bus = ev.EventBus()
        seen: list[ev.Event] = []
        bus.subscribe(seen.append)
        proposer = HostileProposer(list(sources.values()))
        cycle = Cycle(
            policy=lambda: policy, ledger=Ledger.writer(snapshots), swapper=swapper,
            proposers=[proposer],
            sandbox=lambda p: Sandbox(_limits(p), isolation, tmp_root=shadows),
            bus=bus, config=CycleConfig(max_candidates=len(CASES), bench_calls=2,
                                        min_sample_seconds=0.002),
            corpus_root=snapshots.corpus_dir, stop=threading.Event())
        report = cycle.run(HotSpot(TARGET, 1.0, 100))
        items.append(_wait_for_items(loops, items[-1]))

        by_version = {sha256_text(src): name for name, src in sources.items()}
        outcomes = {by_version[o.version]: o for o in report.candidates}
        rejected = {by_version[e.version]: e for e in seen
                    if isinstance(e, ev.CandidateRejected) and e.version in by_version}

        # The gate bypassed: each candidate the gate stopped goes to the jail as it is.
        # (Those the gate let through already met the sandbox, with nothing in front, in
        # the cycle.) Two at a time: most of a shadow run is waiting.
        sandbox = Sandbox(_limits(policy), isolation, tmp_root=shadows)
        corpus_file = next(snapshots.corpus_dir.rglob("*.pkl"))
        gated = [case.name for case in CASES
                 if outcomes.get(case.name) is None or outcomes[case.name].stage != SHADOW]
        with ThreadPoolExecutor(max_workers=2) as pool:
            reports = pool.map(lambda name: sandbox.run(ShadowJob(
                TARGET, sources[name], str(corpus_file), (str(REPO),), repeats=3,
                min_sample_seconds=0.002)), gated)
            direct = dict(zip(gated, reports, strict=True))
        items.append(_wait_for_items(loops, items[-1]))

        for loop in loops:
            loop.stop_and_join()
        time.sleep(0.5)  # a process started by an escaped candidate would have shown by now
        yield Run(
            values=values, sources=sources, report=report, outcomes=outcomes,
            rejected_events=rejected, direct=direct, items=items,
            wrong=sum(loop.wrong for loop in loops), errors=sum(loop.errors for loop in loops),
            active={t: i.version for t, i in swapper.active().items()},
            code_unchanged=target.total.__code__ is original_code,
            canary_entries=sorted(os.listdir(canary)), outside_exists=outside.exists(),
            target_sha_before=target_sha, target_sha_after=_sha(target_file),
            shadow_dirs_left=sorted(os.listdir(shadows)),
            tcp_connections=_pending_connections(tcp), udp_datagrams=_pending_datagrams(udp),
            children_before=children_before,
            children_after={p.pid for p in psutil.Process().children(recursive=True)},
            marked_processes=_marked(f"3000.{digits}", root),
            decoy_status=psutil.Process(decoy.pid).status(), isolation=isolation,
            proposer_requests=len(proposer.requests))
    finally:
        for loop in loops:
            loop.stop_and_join()
        decoy.kill()
        decoy.wait()
        tcp.close()
        udp.close()
        snapshots.close()
        if outside.exists():
            outside.unlink()


def _case_ids(case: Case) -> str:
    return case.name


def test_the_corpus_is_large_and_covers_every_category() -> None:
    """At least 40 distinct hostile candidates, covering every category the issue names."""
    assert len(CASES) >= 40
    assert len({case.name for case in CASES}) == len(CASES)
    assert {case.category for case in CASES} >= CATEGORIES
    assert all(case.stage in (STATIC, SHADOW) for case in CASES)


def test_the_cycle_rejects_the_whole_corpus_and_swaps_nothing(run: Run) -> None:
    """The real cycle judged every candidate, rejected them all and left the live code alone."""
    assert run.proposer_requests == 1
    assert run.report.outcome == "rejected", run.report.reason
    assert run.report.corpus_calls >= 5
    assert set(run.outcomes) == {case.name for case in CASES}
    assert run.report.swapped is None and run.active == {}
    assert run.code_unchanged


@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_the_pipeline_stops_the_candidate_at_its_stage(run: Run, case: Case) -> None:
    """Each candidate is rejected at the expected stage, for the expected reason, with an event."""
    outcome = run.outcomes[case.name]
    assert outcome.verdict == "rejected"
    assert outcome.stage == case.stage, (outcome.stage, outcome.reason, outcome.detail)
    allowed = case.reasons | ({"timeout"} if case.stage == SHADOW else set())
    assert outcome.reason in allowed, (outcome.reason, outcome.detail)
    if case.stage == STATIC:
        assert outcome.detail.startswith("line "), outcome.detail
    event = run.rejected_events[case.name]
    assert (event.stage, event.reason) == (outcome.stage, outcome.reason)


@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_the_jail_holds_the_candidate_without_the_gate(run: Run, case: Case) -> None:
    """Fed to the sandbox with the gate bypassed, the candidate never gets an "ok"."""
    if case.name in run.direct:
        report = run.direct[case.name]
        status, why = report.status, report.reason
    else:  # the gate let it through: the cycle's own shadow run is the evidence
        outcome = run.outcomes[case.name]
        status, why = outcome.reason, outcome.detail
    assert status != "ok", why
    # On a loaded machine the wall-clock deadline or the CPU limit may end a run before
    # the candidate reaches its own failure; both are the jail holding it.
    assert status in case.jail | {"timeout", "limit"}, (status, why)


def test_nothing_was_written_outside_the_jail(run: Run) -> None:
    """The canary directory is empty, no file appeared in /tmp, the target module is intact."""
    assert run.canary_entries == []
    assert not run.outside_exists
    assert run.target_sha_after == run.target_sha_before
    assert run.shadow_dirs_left == [], "a shadow's private tmp dir was left behind"


def test_the_loopback_listeners_saw_nothing(run: Run) -> None:
    """No TCP connection reached the test's listener and no datagram its UDP socket."""
    assert run.tcp_connections == 0
    assert run.udp_datagrams == 0


def test_no_process_outlived_the_corpus(run: Run) -> None:
    """No child of the test is left, and no process anywhere carries the run's marker."""
    assert run.children_after <= run.children_before
    assert run.marked_processes == []


def test_the_daemon_stand_in_and_its_neighbour_were_not_signalled(run: Run) -> None:
    """The test process (the daemon's stand-in) runs on and the decoy was neither killed nor
    stopped."""
    assert psutil.Process(os.getpid()).status() in (psutil.STATUS_RUNNING, psutil.STATUS_SLEEPING)
    assert run.decoy_status in (psutil.STATUS_SLEEPING, psutil.STATUS_RUNNING), run.decoy_status


def test_the_workload_kept_serving_correct_results(run: Run) -> None:
    """The workload's counters advanced through the cycle and the direct runs; no wrong answer."""
    assert run.items[0] > 0
    assert run.items[0] < run.items[1] < run.items[2]
    assert run.wrong == 0 and run.errors == 0
