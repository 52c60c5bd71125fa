"""A service that keeps :mod:`slowcode` busy: what ``selfmod run --app corpus_app:main`` hosts.

Inputs are generated from a seed, a pool of distinct ones per function, so
the recorder sees real variety; :func:`main` calls every function in turn,
round after round, until its stop event is set. :func:`cases` gives the same
kind of inputs from any seed, for checking outputs after a run.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import slowcode

POOL = 12
SEED = 20240301

Case = tuple[Callable[..., Any], tuple[Any, ...]]


def _sales(rng: random.Random) -> tuple[Any, ...]:
    rows = ["date,region,sku,quantity,unit_cents"]
    for n in range(rng.randrange(1500, 2500)):
        region = rng.choice(slowcode.REGIONS)
        region = region.upper() if rng.random() < 0.1 else region
        qty = str(rng.randrange(1, 40)) if rng.random() > 0.02 else "n/a"
        rows.append(f"2024-03-{1 + n % 28:02d},{region},SKU{rng.randrange(500):04d},{qty},"
                    f"{rng.randrange(99, 99_999)}")
        if rng.random() < 0.01:
            rows.append("2024-03-01,broken")
    return (rows,)


def _source(rng: random.Random) -> tuple[Any, ...]:
    words = [*slowcode.KEYWORDS, "total", "count", "x", "y_2", "price", "_tmp", "item"]
    parts = []
    for _ in range(rng.randrange(500, 800)):
        roll = rng.random()
        if roll < 0.35:
            parts.append(rng.choice(words))
        elif roll < 0.6:
            parts.append(str(rng.randrange(100_000)))
        elif roll < 0.9:
            parts.append(rng.choice(slowcode.OPERATORS))
        elif roll < 0.98:
            parts.append('"' + rng.choice(words) + " " + rng.choice(words) + '"')
        else:
            parts.append(rng.choice("@#$!?"))
    return (rng.choice([" ", "\n", "\t "]).join(parts),)


def _graph(rng: random.Random) -> tuple[Any, ...]:
    nodes = rng.randrange(200, 300)
    edges = [(rng.randrange(nodes), rng.randrange(nodes)) for _ in range(nodes * 3)]
    return (edges, rng.randrange(nodes))


def _inventory(rng: random.Random) -> tuple[Any, ...]:
    skus = [f"SKU{n:05d}" for n in rng.sample(range(100_000), rng.randrange(180, 260))]
    expected = [(sku, rng.randrange(0, 50)) for sku in skus]
    counted = []
    for sku, qty in expected:
        roll = rng.random()
        if roll < 0.05:
            continue  # lost
        counted.append((sku, qty if roll < 0.85 else qty + rng.randrange(-3, 4)))
        if rng.random() < 0.03:
            counted.append((sku, 1))  # counted twice
    counted += [(f"SKU{rng.randrange(100_000, 101_000):06d}", 2) for _ in range(5)]
    rng.shuffle(counted)
    return (expected, counted)


def _orders(rng: random.Random) -> tuple[Any, ...]:
    customers = [f"cust-{rng.randrange(10_000):05d}" for _ in range(rng.randrange(300, 500))]
    orders = [(rng.choice(customers), rng.randrange(100, 50_000) // 100 * 100)
              for _ in range(rng.randrange(1500, 2500))]
    return (orders, rng.randrange(10, 25))


def _table(rng: random.Random) -> tuple[Any, ...]:
    header = ["id", "name", "status", "owner", "updated"]
    rows = [[str(rng.randrange(10**6)), "x" * rng.randrange(3, 30),
             rng.choice(["open", "closed", "blocked"]), rng.choice(["ana", "bo", "chen"]),
             f"2024-03-{rng.randrange(1, 29):02d}"] for _ in range(rng.randrange(400, 600))]
    return (header, rows)


def _tasks(rng: random.Random) -> tuple[Any, ...]:
    count = rng.randrange(900, 1200)
    tasks = []
    for n in range(count):
        deps = [f"T{rng.randrange(count)}" for _ in range(rng.randrange(0, 4))]
        tasks.append({"id": f"T{n}", "status": rng.choice(["done", "done", "open", "wip"]),
                      "due": f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                      "deps": deps})
    return (tasks, "2024-07-01")


GENERATORS: dict[str, Callable[[random.Random], tuple[Any, ...]]] = {
    "sales_by_region": _sales,
    "tokenize": _source,
    "shortest_hops": _graph,
    "reconcile_inventory": _inventory,
    "top_customers": _orders,
    "render_table": _table,
    "overdue_tasks": _tasks,
}


def cases(seed: int, per_function: int = POOL) -> dict[str, list[tuple[Any, ...]]]:
    """``per_function`` argument tuples for every function, a function of ``seed`` only."""
    rng = random.Random(seed)
    return {name: [make(rng) for _ in range(per_function)] for name, make in GENERATORS.items()}


def main(stop: threading.Event) -> None:
    """Call every function on its pool of inputs, round after round, until ``stop`` is set."""
    pools = cases(SEED)
    functions = [(getattr(slowcode, name), pool) for name, pool in pools.items()]
    n = 0
    while not stop.is_set():
        for function, pool in functions:
            function(*pool[n % len(pool)])
        n += 1
