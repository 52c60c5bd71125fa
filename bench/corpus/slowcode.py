"""Slow functions of the kinds real projects have, for :mod:`bench.unseen`.

Each is correct and written the way such code often is in the wild: linear
searches inside loops, list queues, repeated sorting, string building by
``+=``. They are pure and exact (integers, strings, no floats accumulated), so
a correct rewrite returns results equal to the original's under ``==``.
Nothing here was written for a particular rewrite rule; some of it has no
local rewrite at all (the BFS wants a deque and a set), and the benchmark
reports those as not sped up.
"""

from __future__ import annotations

from typing import Any

REGIONS = ["north", "south", "east", "west", "central", "online"]
OPERATORS = ["+", "-", "*", "/", "%", "(", ")", ",", "=", "<", ">"]
KEYWORDS = ["if", "else", "and", "or", "not", "let", "in", "fn", "return", "while"]


def sales_by_region(rows: list[str]) -> list[tuple[str, int, int]]:
    """Totals per region from ``date,region,sku,quantity,unit_cents`` rows, header skipped.

    Rows with a missing field or a non-numeric quantity are skipped, as an
    export script would. Returns (region, quantity, revenue in cents), by
    revenue, largest first, ties by region name.
    """
    regions = []
    quantities = {}
    revenue = {}
    for i in range(len(rows)):
        if i == 0:
            continue
        fields = rows[i].split(",")
        if len(fields) != 5:
            continue
        region = fields[1].strip().lower()
        if not fields[3].isdigit() or not fields[4].isdigit():
            continue
        qty = int(fields[3])
        cents = int(fields[4])
        if region not in regions:
            regions.append(region)
        quantities[region] = quantities.get(region, 0) + qty
        revenue[region] = revenue.get(region, 0) + qty * cents
    result = []
    for region in regions:
        result.append((region, quantities[region], revenue[region]))
    result.sort(key=lambda r: (-r[2], r[0]))
    return result


def tokenize(source: str) -> list[tuple[str, str]]:
    """Tokens of a small expression language: numbers, names, keywords, operators, strings.

    Whitespace separates tokens; anything else unknown becomes an ``error``
    token of one character, so the parser can report it with its position.
    """
    tokens = []
    i = 0
    while i < len(source):
        ch = source[i]
        if ch == " " or ch == "\t" or ch == "\n":
            i += 1
        elif ch.isdigit():
            text = ""
            while i < len(source) and source[i].isdigit():
                text += source[i]
                i += 1
            tokens.append(("number", text))
        elif ch.isalpha() or ch == "_":
            text = ""
            while i < len(source) and (source[i].isalnum() or source[i] == "_"):
                text += source[i]
                i += 1
            if text in KEYWORDS:
                tokens.append(("keyword", text))
            else:
                tokens.append(("name", text))
        elif ch == '"':
            text = ""
            i += 1
            while i < len(source) and source[i] != '"':
                text += source[i]
                i += 1
            i += 1
            tokens.append(("string", text))
        elif ch in OPERATORS:
            tokens.append(("op", ch))
            i += 1
        else:
            tokens.append(("error", ch))
            i += 1
    return tokens


def shortest_hops(edges: list[tuple[int, int]], start: int) -> dict[int, int]:
    """Hop count from ``start`` to every node it reaches in an undirected graph (BFS)."""
    neighbours = {}
    for a, b in edges:
        if a not in neighbours:
            neighbours[a] = []
        if b not in neighbours:
            neighbours[b] = []
        neighbours[a].append(b)
        neighbours[b].append(a)
    distance = {start: 0}
    visited = [start]
    queue = [start]
    while len(queue) > 0:
        node = queue.pop(0)
        for nxt in neighbours.get(node, []):
            if nxt not in visited:
                visited.append(nxt)
                distance[nxt] = distance[node] + 1
                queue.append(nxt)
    return distance


def reconcile_inventory(expected: list[tuple[str, int]],
                        counted: list[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """Stock discrepancies: (sku, expected, counted) for every sku where the two differ.

    A sku counted but not expected appears with expected 0, and the other way
    round; duplicate lines of a sku are added up. Sorted by sku.
    """
    skus = []
    for sku, _ in expected:
        if sku not in skus:
            skus.append(sku)
    for sku, _ in counted:
        if sku not in skus:
            skus.append(sku)
    report = []
    for sku in sorted(skus):
        want = 0
        for s, qty in expected:
            if s == sku:
                want += qty
        have = 0
        for s, qty in counted:
            if s == sku:
                have += qty
        if want != have:
            report.append((sku, want, have))
    return report


def top_customers(orders: list[tuple[str, int]], n: int) -> list[tuple[str, int]]:
    """The ``n`` customers with the largest order totals (cents), largest first.

    Equal totals rank the later name (in string order) first.
    """
    totals = {}
    for customer, cents in orders:
        if customer in totals.keys():  # noqa: SIM118  (the slow idiom is the point)
            totals[customer] = totals[customer] + cents
        else:
            totals[customer] = cents
    remaining = list(totals.items())
    best = []
    for _ in range(min(n, len(remaining))):
        ranked = sorted(remaining, key=lambda item: (item[1], item[0]))
        winner = ranked[-1]
        best.append(winner)
        remaining.remove(winner)
    return best


def render_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain-text table with columns padded to their widest cell, as a CLI prints it."""
    widths = []
    for col in range(len(header)):
        width = len(header[col])
        for row in rows:
            if len(row[col]) > width:
                width = len(row[col])
        widths.append(width)
    out = ""
    for col in range(len(header)):
        out += header[col].ljust(widths[col]) + "  "
    out = out.rstrip() + "\n"
    for col in range(len(header)):
        out += "-" * widths[col] + "  "
    out = out.rstrip() + "\n"
    for row in rows:
        line = ""
        for col in range(len(header)):
            line += row[col].ljust(widths[col]) + "  "
        out += line.rstrip() + "\n"
    return out


def overdue_tasks(tasks: list[dict[str, Any]], today: str) -> list[str]:
    """Ids of open tasks past their due date whose dependencies are all done (ISO dates)."""
    done = []
    for task in tasks:
        if task["status"] == "done":
            done.append(task["id"])
    overdue = []
    for task in tasks:
        if task["status"] == "done":
            continue
        if task["due"] >= today:
            continue
        ready = True
        for dep in task["deps"]:
            if dep not in done:
                ready = False
                break
        if ready:
            overdue.append(task["id"])
    return overdue
