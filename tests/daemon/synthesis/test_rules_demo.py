"""The rules on the bundled demo workload: each slow idiom it carries is found, and every
candidate, installed into the live function, gives the original's results."""

from __future__ import annotations

import inspect
import random
import types
from typing import Any

import pytest

from daemon.synthesis.base import ProposalRequest
from daemon.synthesis.rules import RulesProposer
from demo import logstats
from invariants.targets import compile_function, make_function, original_source
from tests.daemon.synthesis.outcomes import outcome

# demo function -> the rules that must find something in it
EXPECTED: dict[str, set[str]] = {
    "parse_line": {"append-to-comprehension"},
    "parse_batch": {"append-to-comprehension"},
    "dedupe_sessions": {"quadratic-dedupe", "append-to-comprehension"},
    "unique_visitors": {"quadratic-dedupe"},
    "sessions_per_user": {"dict-get-counting"},
    "count_by_endpoint": {"dict-get-counting"},
    "count_by_status": {"dict-get-counting"},
    "count_by_method_class": {"list-literal-membership"},
    "server_errors": {"range-len-to-enumerate", "manual-sum"},
    "total_bytes": {"append-to-comprehension", "manual-sum"},
    "latencies": {"append-to-comprehension"},
    "latency_percentiles": {"hoist-sort-from-loop", "manual-min-max"},
    "latency_distribution": {"hoist-sort-from-loop"},
    "time_range": {"sorted-index-to-min-max"},
    "top_k": {"sorted-index-to-min-max"},
    "slowest_endpoints": {"manual-sum"},
    "render_report": {"string-concat-join"},
}


def log_lines(seed: int, count: int) -> list[str]:
    """Access-log lines in the demo's format, a few of them cut short (malformed)."""
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        path = rng.choice(["/api/users/", "/api/orders/", "/static/app.js", "/health"])
        if path.endswith("/"):
            path += str(rng.randrange(100))
        line = (f"10.0.{rng.randrange(3)}.{rng.randrange(9)} - "
                f"{rng.choice(['alice', 'bob', 'carol', '-'])} "
                f"[2024-03-01T12:{i // 60 % 60:02d}:{i % 60:02d}Z] "
                f'"{rng.choice(["GET", "GET", "POST", "HEAD", "DELETE", "OPTIONS"])} {path} '
                f'HTTP/1.1" {rng.choice([200, 200, 201, 304, 404, 500, 503])} '
                f"{rng.randrange(10**5)} {rng.randrange(10**6)} sid={rng.randrange(40):x}")
        if rng.random() < 0.05:
            line = line[:rng.randrange(len(line))]
        lines.append(line)
    return lines


def demo_arguments(lines: list[str]) -> dict[str, tuple[Any, ...]]:
    records = logstats.parse_batch(lines)
    values = logstats.latencies(records)
    return {
        "parse_line": (lines[0],),
        "parse_batch": (lines,),
        "dedupe_sessions": (records,),
        "unique_visitors": (records,),
        "sessions_per_user": (logstats.dedupe_sessions(records),),
        "count_by_endpoint": (records,),
        "count_by_status": (records,),
        "count_by_method_class": (records,),
        "server_errors": (records,),
        "total_bytes": (records,),
        "latencies": (records,),
        "latency_percentiles": (values,),
        "latency_distribution": (values,),
        "time_range": (records,),
        "top_k": (logstats.count_by_endpoint(records), 3),
        "slowest_endpoints": (records, 3),
        "render_report": (logstats.process_batch(lines),),
    }


BATCHES = [demo_arguments(log_lines(seed, size)) for seed, size in ((1, 300), (2, 40), (3, 1))]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_demo_function_gets_correct_candidates(name: str) -> None:
    """The expected rules fire on the demo function and each candidate matches the original."""
    function: types.FunctionType = getattr(logstats, name)
    request = ProposalRequest(target=f"demo.logstats:{name}",
                              source=original_source(function),
                              module_source=inspect.getsource(logstats),
                              allowed_imports=("collections",))
    candidates = RulesProposer().propose(request)
    found = {rule for c in candidates for rule in c.origin.removeprefix("rules:").split("+")}
    assert EXPECTED[name] <= found
    for candidate in candidates:
        code = compile_function(candidate.source, function, filename=f"<{candidate.origin}>")
        faster = make_function(code, function)
        for batch in BATCHES:
            assert outcome(faster, batch[name]) == outcome(function, batch[name]), \
                candidate.origin


def test_demo_process_batch_has_nothing_to_rewrite() -> None:
    """process_batch only calls the others; the rules leave it alone."""
    request = ProposalRequest(target="demo.logstats:process_batch",
                              source=inspect.getsource(logstats.process_batch),
                              allowed_imports=("collections",))
    assert RulesProposer().propose(request) == []
