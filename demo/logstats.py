"""Access-log analytics: the demo workload's functions, and the daemon's demo target.

:func:`process_batch` turns a batch of access-log lines into a stats dict
(traffic by status, method and endpoint, visitors, sessions, latency
percentiles, slowest endpoints) with a rendered text report.

The code is correct but written with the slow idioms real code has (quadratic
deduplication, sorting repeated inside loops, string ``+=``, ``dict.get``
counting, append loops, ``range(len(...))`` indexing), each in its plain
textbook form so that the rule-based rewriter recognises it. Keep it that way:
this file is the baseline the daemon improves on, and :mod:`demo.oracle`
loads a frozen copy of it from disk.

Everything is pure and exact: no state is changed, no I/O, no float is
accumulated (latencies are integer microseconds), so a correct rewrite gives
results equal to the original's under ``==``.

A line looks like::

    203.0.113.7 - alice [2024-03-01T12:00:05Z] "GET /api/users/42 HTTP/1.1" 200 5123 18234 sid=9f3a

that is: ip, ident, user, timestamp, method, path, protocol, status, bytes,
latency in microseconds, session id.
"""

from __future__ import annotations

from typing import Any

# (ip, user, timestamp, method, route, status, bytes, latency_us, session)
Record = tuple[str, str, str, str, str, int, int, int, str]
Stats = dict[str, Any]

QUANTILES: tuple[tuple[str, int], ...] = (
    ("p50", 500), ("p75", 750), ("p90", 900), ("p95", 950), ("p99", 990), ("p99.9", 999))
# the latency distribution curve: every percent, then the far tail
DISTRIBUTION_PER_MILLE: tuple[int, ...] = (*range(10, 1000, 10), 995, 999)
TOP_K = 5


def parse_line(line: str) -> Record | None:
    """Parse one log line into a record, or None when the line is malformed.

    Numeric path segments are replaced by ``{id}``, so the record carries the
    route (``/api/users/{id}``) rather than the concrete path.
    """
    parts = line.split()
    if len(parts) != 11:
        return None
    ip, _ident, user, stamp, method, path, proto, status, size, latency, session = parts
    if not (stamp.startswith("[") and stamp.endswith("]")):
        return None
    if not (method.startswith('"') and proto.endswith('"') and path.startswith("/")):
        return None
    if not (status.isdecimal() and size.isdecimal() and latency.isdecimal()):
        return None
    if not session.startswith("sid="):
        return None
    segments = []
    for part in path.split("/"):
        segments.append("{id}" if part.isdecimal() else part)
    route = "/".join(segments)
    return (ip, user, stamp[1:-1], method[1:], route, int(status), int(size), int(latency),
            session[4:])


def parse_batch(lines: list[str]) -> list[Record]:
    """Parse every line, dropping the malformed ones, in input order."""
    parsed = []
    for line in lines:
        parsed.append(parse_line(line))
    records = []
    for rec in parsed:
        if rec is not None:
            records.append(rec)
    return records


def dedupe_sessions(records: list[Record]) -> list[tuple[str, str]]:
    """The distinct ``(user, session)`` pairs, in order of first appearance."""
    keys = []
    for rec in records:
        keys.append((rec[1], rec[8]))
    result = []
    for key in keys:
        if key not in result:
            result.append(key)
    return result


def unique_visitors(records: list[Record]) -> list[str]:
    """The distinct client ips, in order of first appearance."""
    ips = []
    for rec in records:
        ips.append(rec[0])
    visitors = []
    for ip in ips:
        if ip not in visitors:
            visitors.append(ip)
    return visitors


def sessions_per_user(sessions: list[tuple[str, str]]) -> dict[str, int]:
    """How many distinct sessions each user had, in order of first appearance."""
    counts: dict[str, int] = {}
    for user, _session in sessions:
        counts[user] = counts.get(user, 0) + 1
    return counts


def count_by_endpoint(records: list[Record]) -> dict[str, int]:
    """Requests per endpoint (``"METHOD /route"``), in order of first appearance."""
    counts: dict[str, int] = {}
    for rec in records:
        endpoint = rec[3] + " " + rec[4]
        counts[endpoint] = counts.get(endpoint, 0) + 1
    return counts


def count_by_status(records: list[Record]) -> dict[str, int]:
    """Requests per status class (``"2xx"``, ``"4xx"``, ...), in order of first appearance."""
    counts: dict[str, int] = {}
    for rec in records:
        klass = str(rec[5] // 100) + "xx"
        counts[klass] = counts.get(klass, 0) + 1
    return counts


def count_by_method_class(records: list[Record]) -> dict[str, int]:
    """Requests that only read (GET, HEAD, OPTIONS) against those that may write."""
    reads = 0
    writes = 0
    for rec in records:
        method = rec[3]
        if method in ["GET", "HEAD", "OPTIONS"]:
            reads += 1
        else:
            writes += 1
    return {"read": reads, "write": writes}


def server_errors(records: list[Record]) -> int:
    """How many requests ended with a 5xx status."""
    errors = 0
    for i in range(len(records)):
        if records[i][5] >= 500:
            errors += 1
    return errors


def total_bytes(records: list[Record]) -> int:
    """Bytes sent over all requests."""
    sizes = []
    for rec in records:
        sizes.append(rec[6])
    total = 0
    for size in sizes:
        total += size
    return total


def latencies(records: list[Record]) -> list[int]:
    """The latency of every request in microseconds, in input order."""
    values = []
    for rec in records:
        values.append(rec[7])
    return values


def percentile(values: list[int], per_mille: int) -> int:
    """The nearest-rank percentile of ``values`` (``per_mille`` 500 is the median).

    Raises ValueError on an empty list.
    """
    if not values:
        raise ValueError("percentile of an empty list")
    ordered = sorted(values)
    rank = (per_mille * len(ordered) + 999) // 1000
    return ordered[max(rank, 1) - 1]


def latency_percentiles(values: list[int]) -> dict[str, int]:
    """Latency percentiles p50 to p99.9 and the maximum; an empty dict for no values."""
    if not values:
        return {}
    result = {}
    for name, per_mille in QUANTILES:
        ordered = sorted(values)
        rank = (per_mille * len(ordered) + 999) // 1000
        result[name] = ordered[max(rank, 1) - 1]
    peak = values[0]
    for value in values:
        if value > peak:
            peak = value
    result["max"] = peak
    return result


def latency_distribution(values: list[int]) -> list[tuple[int, int]]:
    """The latency curve as ``(per_mille, latency)`` points; empty for no values."""
    if not values:
        return []
    curve = []
    for per_mille in DISTRIBUTION_PER_MILLE:
        ordered = sorted(values)
        rank = (per_mille * len(ordered) + 999) // 1000
        curve.append((per_mille, ordered[max(rank, 1) - 1]))
    return curve


def time_range(records: list[Record]) -> tuple[str, str]:
    """The first and last timestamp of the batch; two empty strings for no records."""
    stamps = []
    for rec in records:
        stamps.append(rec[2])
    if not stamps:
        return ("", "")
    return (sorted(stamps)[0], sorted(stamps)[-1])


def top_k(counts: dict[str, int], k: int) -> list[tuple[str, int]]:
    """The ``k`` largest counts, largest first, ties broken by name."""
    items = list(counts.items())
    top: list[tuple[str, int]] = []
    while items and len(top) < k:
        best = sorted(items, key=lambda item: (-item[1], item[0]))[0]
        top.append(best)
        items.remove(best)
    return top


def slowest_endpoints(records: list[Record], k: int) -> list[tuple[str, int, int]]:
    """The ``k`` endpoints with the highest p90 latency: ``(endpoint, mean, p90)``."""
    groups: dict[str, list[int]] = {}
    for rec in records:
        endpoint = rec[3] + " " + rec[4]
        if endpoint not in groups:
            groups[endpoint] = []
        groups[endpoint].append(rec[7])
    rows = []
    for endpoint, values in groups.items():
        total = 0
        for value in values:
            total += value
        rows.append((endpoint, total // len(values), percentile(values, 900)))
    return sorted(rows, key=lambda row: (-row[2], row[0]))[:k]


def render_report(stats: Stats) -> str:
    """The batch's stats as a plain-text report."""
    report = ""
    report += f"lines {stats['lines']}  records {stats['records']}  "
    report += f"malformed {stats['malformed']}\n"
    report += f"window {stats['window'][0]} .. {stats['window'][1]}\n"
    report += f"visitors {stats['visitors']}  sessions {stats['sessions']}  "
    report += f"bytes {stats['bytes']}  5xx {stats['server_errors']}\n"
    for klass, count in stats["by_status"].items():
        report += f"  status {klass:<4} {count:>7}\n"
    for name, value in stats["latency_us"].items():
        report += f"  latency {name:<6} {value:>9} us\n"
    for endpoint, count in stats["top_endpoints"]:
        report += f"  top  {endpoint:<40} {count:>7}\n"
    for endpoint, mean, p90 in stats["slowest_endpoints"]:
        report += f"  slow {endpoint:<40} mean {mean:>9} us  p90 {p90:>9} us\n"
    for user, count in stats["busiest_users"]:
        report += f"  user {user:<20} {count:>4} sessions\n"
    return report


def process_batch(lines: list[str]) -> Stats:
    """Analyse one batch of log lines: the stats dict, with the rendered report under "report"."""
    records = parse_batch(lines)
    sessions = dedupe_sessions(records)
    values = latencies(records)
    stats: Stats = {
        "lines": len(lines),
        "records": len(records),
        "malformed": len(lines) - len(records),
        "window": time_range(records),
        "visitors": len(unique_visitors(records)),
        "sessions": len(sessions),
        "bytes": total_bytes(records),
        "server_errors": server_errors(records),
        "by_status": count_by_status(records),
        "by_method": count_by_method_class(records),
        "latency_us": latency_percentiles(values),
        "latency_curve": latency_distribution(values),
        "top_endpoints": top_k(count_by_endpoint(records), TOP_K),
        "slowest_endpoints": slowest_endpoints(records, TOP_K),
        "busiest_users": top_k(sessions_per_user(sessions), TOP_K),
    }
    stats["report"] = render_report(stats)
    return stats
