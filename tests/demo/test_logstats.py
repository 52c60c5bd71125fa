"""Golden cases for the demo's log analytics, each answer worked out by hand."""

from __future__ import annotations

import pytest

from demo import logstats
from demo.logstats import Record

LINE = ('203.0.113.7 - alice [2024-03-01T12:00:05Z] "GET /api/users/42/orders HTTP/1.1" '
        "200 5123 18234 sid=9f3a")


def rec(ip: str = "10.0.0.1", user: str = "alice", stamp: str = "2024-03-01T12:00:00Z",
        method: str = "GET", route: str = "/x", status: int = 200, size: int = 0,
        latency: int = 0, session: str = "s1") -> Record:
    return (ip, user, stamp, method, route, status, size, latency, session)


def test_parse_line_reads_every_field_and_templates_ids() -> None:
    """A well-formed line becomes a record with numeric path segments replaced by {id}."""
    assert logstats.parse_line(LINE) == (
        "203.0.113.7", "alice", "2024-03-01T12:00:05Z", "GET", "/api/users/{id}/orders",
        200, 5123, 18234, "9f3a")


@pytest.mark.parametrize("line", [
    "",
    "complete garbage",
    LINE.replace(" 200 ", " - "),  # no status
    LINE.replace('"GET', "GET"),  # request line without its opening quote
    LINE.replace("HTTP/1.1\"", "HTTP/1.1"),  # ... or its closing quote
    LINE.replace(" alice ", " alice extra "),  # a field too many
    LINE.replace(" sid=9f3a", ""),  # a field too few
    LINE.replace("sid=", "session="),
    LINE.replace("[2024-03-01T12:00:05Z]", "2024-03-01T12:00:05Z"),
    LINE.replace("/api/users/42/orders", "api/users"),
    LINE.replace(" 18234 ", " 18.2 "),
])
def test_parse_line_rejects_malformed_lines(line: str) -> None:
    """A line that does not have every field in its expected shape parses to None."""
    assert logstats.parse_line(line) is None


def test_parse_batch_drops_malformed_lines_and_keeps_order() -> None:
    """parse_batch returns the parsed records of the good lines, in input order."""
    second = LINE.replace("alice", "bob").replace("/api/users/42/orders", "/health")
    records = logstats.parse_batch([LINE, "junk", second])
    assert [(r[1], r[4]) for r in records] == [("alice", "/api/users/{id}/orders"),
                                               ("bob", "/health")]


def test_dedupe_sessions_keeps_first_appearance_order() -> None:
    """Each (user, session) pair appears once, where it was first seen."""
    records = [rec(user="a", session="s1"), rec(user="b", session="s2"),
               rec(user="a", session="s1"), rec(user="a", session="s3"),
               rec(user="b", session="s1")]
    assert logstats.dedupe_sessions(records) == [("a", "s1"), ("b", "s2"), ("a", "s3"),
                                                 ("b", "s1")]


def test_unique_visitors_lists_each_ip_once() -> None:
    """Client ips are listed once each, in order of first appearance."""
    records = [rec(ip="10.0.0.2"), rec(ip="10.0.0.1"), rec(ip="10.0.0.2")]
    assert logstats.unique_visitors(records) == ["10.0.0.2", "10.0.0.1"]


def test_sessions_per_user_counts_distinct_sessions() -> None:
    """Each user is counted once per session."""
    assert logstats.sessions_per_user([("a", "s1"), ("b", "s2"), ("a", "s3")]) == {"a": 2,
                                                                                   "b": 1}


def test_count_by_endpoint_groups_method_and_route() -> None:
    """Endpoints are "METHOD /route", so the same route under two methods counts twice."""
    records = [rec(method="GET", route="/a"), rec(method="POST", route="/a"),
               rec(method="GET", route="/a")]
    assert logstats.count_by_endpoint(records) == {"GET /a": 2, "POST /a": 1}


def test_count_by_status_groups_by_class() -> None:
    """Statuses are counted by their hundreds class."""
    records = [rec(status=s) for s in (200, 201, 304, 404, 503, 204)]
    assert logstats.count_by_status(records) == {"2xx": 3, "3xx": 1, "4xx": 1, "5xx": 1}


def test_count_by_method_class_splits_reads_from_writes() -> None:
    """GET, HEAD and OPTIONS read; every other method may write."""
    records = [rec(method=m) for m in ("GET", "HEAD", "OPTIONS", "POST", "DELETE", "GET")]
    assert logstats.count_by_method_class(records) == {"read": 4, "write": 2}


def test_server_errors_counts_only_5xx() -> None:
    """Only statuses of 500 and above are server errors."""
    assert logstats.server_errors([rec(status=s) for s in (499, 500, 503, 200)]) == 2


def test_total_bytes_and_latencies() -> None:
    """Bytes are summed; latencies are listed in input order."""
    records = [rec(size=100, latency=7), rec(size=0, latency=3), rec(size=23, latency=5)]
    assert logstats.total_bytes(records) == 123
    assert logstats.latencies(records) == [7, 3, 5]
    assert logstats.total_bytes([]) == 0


@pytest.mark.parametrize(("per_mille", "expected"),
                         [(0, 15), (50, 15), (300, 20), (400, 20), (500, 35), (1000, 50)])
def test_percentile_is_nearest_rank(per_mille: int, expected: int) -> None:
    """The textbook nearest-rank example: 15, 20, 35, 40, 50."""
    assert logstats.percentile([40, 15, 50, 35, 20], per_mille) == expected


def test_percentile_of_nothing_raises() -> None:
    """An empty list has no percentile."""
    with pytest.raises(ValueError):
        logstats.percentile([], 500)


def test_latency_percentiles_on_one_to_a_thousand() -> None:
    """Over 1..1000 every per-mille quantile is its own rank."""
    values = list(range(1000, 0, -1))
    assert logstats.latency_percentiles(values) == {
        "p50": 500, "p75": 750, "p90": 900, "p95": 950, "p99": 990, "p99.9": 999, "max": 1000}
    assert logstats.latency_percentiles([]) == {}


def test_latency_distribution_points() -> None:
    """The curve has a point every percent plus 99.5 and 99.9, by nearest rank."""
    curve = logstats.latency_distribution([9000, 1000, 3000])
    assert len(curve) == 101
    # rank 1 up to the 33.3rd percentile, rank 2 up to the 66.6th, then rank 3
    assert curve == ([(p, 1000) for p in range(10, 340, 10)]
                     + [(p, 3000) for p in range(340, 670, 10)]
                     + [(p, 9000) for p in (*range(670, 1000, 10), 995, 999)])
    assert logstats.latency_distribution([]) == []


def test_time_range_finds_first_and_last_out_of_order() -> None:
    """The window spans the earliest and latest timestamp, whatever the line order."""
    records = [rec(stamp="2024-03-01T12:00:05Z"), rec(stamp="2024-03-01T11:59:59Z"),
               rec(stamp="2024-03-01T12:00:01Z")]
    assert logstats.time_range(records) == ("2024-03-01T11:59:59Z", "2024-03-01T12:00:05Z")
    assert logstats.time_range([]) == ("", "")


def test_top_k_orders_by_count_then_name() -> None:
    """The largest counts come first and ties are broken by name."""
    counts = {"a": 3, "b": 5, "c": 3, "d": 1}
    assert logstats.top_k(counts, 3) == [("b", 5), ("a", 3), ("c", 3)]
    assert logstats.top_k(counts, 10) == [("b", 5), ("a", 3), ("c", 3), ("d", 1)]
    assert logstats.top_k(counts, 0) == []
    assert counts == {"a": 3, "b": 5, "c": 3, "d": 1}


def test_slowest_endpoints_ranks_by_p90() -> None:
    """Endpoints are ranked by p90 latency and report their integer mean."""
    records = ([rec(route="/x", latency=v) for v in (10, 20, 30)]
               + [rec(method="POST", route="/y", latency=100)]
               + [rec(route="/z", latency=5), rec(route="/z", latency=6)])
    assert logstats.slowest_endpoints(records, 2) == [("POST /y", 100, 100), ("GET /x", 20, 30)]


def test_render_report_layout() -> None:
    """The report lists the headline numbers, then one line per row of each table."""
    stats = {
        "lines": 4, "records": 3, "malformed": 1, "window": ("t0", "t1"), "visitors": 2,
        "sessions": 2, "bytes": 150, "server_errors": 1, "by_status": {"2xx": 3},
        "latency_us": {"p50": 3000}, "top_endpoints": [("GET /a", 2)],
        "slowest_endpoints": [("GET /a", 2000, 3000)], "busiest_users": [("alice", 1)],
    }
    assert logstats.render_report(stats) == (
        "lines 4  records 3  malformed 1\n"
        "window t0 .. t1\n"
        "visitors 2  sessions 2  bytes 150  5xx 1\n"
        "  status 2xx        3\n"
        "  latency p50         3000 us\n"
        "  top  GET /a" + " " * 34 + "       2\n"
        "  slow GET /a" + " " * 34 + " mean      2000 us  p90      3000 us\n"
        "  user alice                   1 sessions\n")


def test_process_batch_summarises_a_small_batch() -> None:
    """Three good lines and one bad one give the hand-computed stats."""
    lines = [
        '10.0.0.1 - alice [2024-03-01T12:00:05Z] "GET /api/users/42 HTTP/1.1" 200 100 3000 sid=s1',
        '10.0.0.2 - bob [2024-03-01T12:00:03Z] "POST /api/orders HTTP/1.1" 503 0 9000 sid=s2',
        '10.0.0.1 - alice [2024-03-01T12:00:09Z] "GET /api/users/7 HTTP/1.1" 404 50 1000 sid=s1',
        "garbage",
    ]
    stats = logstats.process_batch(lines)
    report = stats.pop("report")
    assert stats == {
        "lines": 4, "records": 3, "malformed": 1,
        "window": ("2024-03-01T12:00:03Z", "2024-03-01T12:00:09Z"),
        "visitors": 2, "sessions": 2, "bytes": 150, "server_errors": 1,
        "by_status": {"2xx": 1, "5xx": 1, "4xx": 1},
        "by_method": {"read": 2, "write": 1},
        "latency_us": {"p50": 3000, "p75": 9000, "p90": 9000, "p95": 9000, "p99": 9000,
                       "p99.9": 9000, "max": 9000},
        "latency_curve": ([(p, 1000) for p in range(10, 340, 10)]
                          + [(p, 3000) for p in range(340, 670, 10)]
                          + [(p, 9000) for p in (*range(670, 1000, 10), 995, 999)]),
        "top_endpoints": [("GET /api/users/{id}", 2), ("POST /api/orders", 1)],
        "slowest_endpoints": [("POST /api/orders", 9000, 9000),
                              ("GET /api/users/{id}", 2000, 3000)],
        "busiest_users": [("alice", 1), ("bob", 1)],
    }
    assert report.startswith("lines 4  records 3  malformed 1\n"
                             "window 2024-03-01T12:00:03Z .. 2024-03-01T12:00:09Z\n")


def test_process_batch_of_nothing() -> None:
    """An empty batch yields zeros and empty tables rather than an error."""
    stats = logstats.process_batch([])
    assert (stats["records"], stats["window"], stats["latency_us"], stats["top_endpoints"]) == (
        0, ("", ""), {}, [])
