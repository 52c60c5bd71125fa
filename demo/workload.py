"""The bundled demo workload: access-log analytics running in worker threads.

:class:`DemoWorkload` generates its input from a seed, keeps a few worker
threads calling :func:`demo.logstats.process_batch` in a loop, counts
what they do, and every ``oracle_every``-th batch recomputes the result with
the frozen oracle (:mod:`demo.oracle`) and compares the two. The daemon
optimises ``demo.logstats`` underneath it; the counters show whether
that made the service faster, and the oracle whether it stayed correct.

Input batches are generated once, up front, into a pool the workers cycle
through: generating text is not what the workload is about, and it must not
dilute the throughput being measured.
"""

from __future__ import annotations

import collections
import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from demo import logstats, oracle

Clock = Callable[[], float]
MismatchCallback = Callable[[str, str], None]
ErrorCallback = Callable[[BaseException], None]

# One batch of 2500 lines takes about 40 ms before optimisation on a 2-core machine.
DEFAULT_BATCH_SIZE = 2500
DEFAULT_POOL_SIZE = 16
# The work is pure Python under the GIL: a second worker adds no throughput, only GIL
# hand-offs that stall whenever the other core is busy, which made the throughput
# ratio before/after optimisation swing between 2.5x and 4.5x where one worker held
# 4.4-4.8x. More workers are for exercising swaps under concurrency.
DEFAULT_WORKERS = 1
# The oracle runs the unoptimised code inline: checking one batch in 20 costs about
# 5% before optimisation and about 20% once the live code is five times faster.
DEFAULT_ORACLE_EVERY = 20
DEFAULT_WINDOW_SECONDS = 10.0

_FIRST_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan",
                "judy", "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent",
                "victor", "walter", "yvonne")
# (weight, method, path template, typical latency in microseconds); "{id}" becomes a number
_ROUTES: tuple[tuple[int, str, str, int], ...] = (
    (30, "GET", "/api/products/{id}", 4_000),
    (12, "GET", "/api/products", 9_000),
    (10, "GET", "/api/users/{id}", 3_000),
    (8, "GET", "/api/users/{id}/orders", 12_000),
    (6, "GET", "/api/orders/{id}", 5_000),
    (6, "GET", "/api/search", 40_000),
    (8, "GET", "/static/app.js", 600),
    (5, "GET", "/static/app.css", 500),
    (4, "HEAD", "/health", 150),
    (2, "OPTIONS", "/api/cart", 200),
    (5, "POST", "/api/cart/{id}/items", 15_000),
    (3, "DELETE", "/api/cart/{id}/items/{id}", 8_000),
    (2, "PUT", "/api/users/{id}", 11_000),
    (1, "PATCH", "/api/orders/{id}", 9_000),
    (3, "POST", "/api/orders", 60_000),
    (2, "POST", "/login", 25_000),
    (1, "POST", "/logout", 2_000),
)
_ROUTE_WEIGHTS = tuple(itertools.accumulate(route[0] for route in _ROUTES))
_MALFORMED_SHARE = 0.02
LINES_PER_SESSION = 2
SESSIONS_PER_USER = 3
_START_EPOCH = 1_709_294_400  # 2024-03-01T12:00:00Z


@dataclass(frozen=True)
class WorkloadStats:
    """The workload's counters at one moment.

    ``errors`` counts batches whose live call raised; ``mismatches`` counts
    oracle-checked batches whose live outcome (value or exception) differed from
    the oracle's. A batch that raised while being checked counts in both.
    """

    batches: int
    items: int
    errors: int
    oracle_checks: int
    mismatches: int
    throughput: float  # items per second over the sliding window


def generate_batch(rng: random.Random, size: int, start: int) -> list[str]:
    """``size`` log lines starting near unix time ``start``, drawn from ``rng``.

    About a third as many sessions as lines are active, so most sessions make
    several requests and deduplication has real work; a few lines are malformed.
    """
    users = [(f"{rng.choice(_FIRST_NAMES)}{rng.randrange(1000)}",
              [f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
               for _ in range(rng.randrange(1, 4))])
             for _ in range(size // SESSIONS_PER_USER // LINES_PER_SESSION + 1)]
    sessions = []
    for _ in range(size // LINES_PER_SESSION + 1):
        user, ips = rng.choice(users)
        sessions.append((rng.choice(ips), "-" if rng.random() < 0.1 else user,
                         f"{rng.getrandbits(40):010x}"))
    lines = []
    for n in range(size):
        ip, user, sid = rng.choice(sessions)
        _, method, template, typical = rng.choices(_ROUTES, cum_weights=_ROUTE_WEIGHTS)[0]
        path = "/".join(str(rng.randrange(1, 10_000)) if part == "{id}" else part
                        for part in template.split("/"))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                              time.gmtime(start + n // 20 + rng.randrange(-2, 3)))
        latency = max(50, int(typical * rng.lognormvariate(0.0, 0.7)))
        status = _status(rng, method)
        size_bytes = 0 if method in ("HEAD", "OPTIONS") or status == 204 else rng.randrange(
            200, 60_000)
        line = (f'{ip} - {user} [{stamp}] "{method} {path} HTTP/1.1" '
                f"{status} {size_bytes} {latency} sid={sid}")
        if rng.random() < _MALFORMED_SHARE:
            line = _mangle(rng, line)
        lines.append(line)
    return lines


def _status(rng: random.Random, method: str) -> int:
    roll = rng.random()
    if roll < 0.01:
        return rng.choice((500, 502, 503))
    if roll < 0.04:
        return rng.choice((400, 401, 403, 404, 404, 404))
    if method == "GET" and roll < 0.10:
        return 304
    return {"POST": 201, "DELETE": 204}.get(method, 200)


def _mangle(rng: random.Random, line: str) -> str:
    """One of the ways real log lines arrive broken."""
    fields = line.split(" ")
    match rng.randrange(5):
        case 0:  # truncated write
            return line[: rng.randrange(len(line))]
        case 1:  # the proxy could not tell the status
            fields[8] = "-"
        case 2:  # a stray field from a misconfigured format
            fields.insert(3, "extra")
        case 3:  # the request line lost its quotes
            fields[5] = fields[5].lstrip('"')
            fields[7] = fields[7].rstrip('"')
        case _:  # binary noise
            return "".join(chr(rng.randrange(33, 127)) for _ in range(rng.randrange(1, 60)))
    return " ".join(fields)


def make_pool(seed: int, batches: int, size: int) -> tuple[tuple[str, ...], ...]:
    """The workload's input: ``batches`` batches of ``size`` lines, a function of ``seed`` only."""
    rng = random.Random(seed)
    return tuple(tuple(generate_batch(rng, size, _START_EPOCH + 3600 * n))
                 for n in range(batches))


class DemoWorkload:
    """Access-log analytics in ``workers`` threads, checked against a frozen oracle.

    ``clock`` is a monotonic clock in seconds, used for throughput only (joins
    wait in real time); ``on_mismatch(function_name, detail)`` is called from a
    worker thread for every oracle mismatch, naming the first ``logstats``
    function found to differ (see :func:`demo.oracle.locate_mismatch`);
    ``on_error`` is called for every exception a live batch raises, and for any
    other exception in a worker step.
    """

    def __init__(self, *, seed: int = 0, workers: int = DEFAULT_WORKERS,
                 batch_size: int = DEFAULT_BATCH_SIZE, pool_size: int = DEFAULT_POOL_SIZE,
                 oracle_every: int = DEFAULT_ORACLE_EVERY,
                 window_seconds: float = DEFAULT_WINDOW_SECONDS,
                 clock: Clock = time.monotonic,
                 on_mismatch: MismatchCallback | None = None,
                 on_error: ErrorCallback | None = None) -> None:
        if workers < 1 or batch_size < 1 or pool_size < 1 or oracle_every < 1:
            raise ValueError("workers, batch_size, pool_size and oracle_every must be >= 1")
        if window_seconds <= 0:
            raise ValueError("window_seconds must be > 0")
        self.seed = seed
        self.batch_size = batch_size
        self.pool_size = pool_size
        self.oracle_every = oracle_every
        self.window_seconds = window_seconds
        self._workers = workers
        self._clock = clock
        self._on_mismatch = on_mismatch
        self._on_error = on_error
        self._lock = threading.Lock()
        self._seq = 0
        self._batches = 0
        self._items = 0
        self._errors = 0
        self._checks = 0
        self._mismatches = 0
        self._started_at: float | None = None
        self._done: collections.deque[tuple[float, int]] = collections.deque()
        self._pool: tuple[tuple[str, ...], ...] = ()
        self._threads: list[_Worker] = []

    @property
    def pool(self) -> tuple[tuple[str, ...], ...]:
        """The input batches the workers cycle through (empty before :meth:`start`)."""
        return self._pool

    @property
    def threads(self) -> tuple[threading.Thread, ...]:
        """The worker threads (empty before :meth:`start`)."""
        return tuple(self._threads)

    def start(self) -> None:
        """Generate the input pool and start the worker threads."""
        if self._threads:
            raise RuntimeError("the workload has already been started")
        self._pool = make_pool(self.seed, self.pool_size, self.batch_size)
        self._started_at = self._clock()
        self._threads = [_Worker(self, n) for n in range(self._workers)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Ask every worker to stop after its current batch."""
        for thread in self._threads:
            thread.stop()

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds in all for the workers; True when all have ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        return not any(thread.is_alive() for thread in self._threads)

    def throughput(self) -> float:
        """Items (log lines) processed per second over the last ``window_seconds``."""
        with self._lock:
            return self._throughput_locked()

    def snapshot(self) -> WorkloadStats:
        """All counters, read together."""
        with self._lock:
            return WorkloadStats(batches=self._batches, items=self._items, errors=self._errors,
                                 oracle_checks=self._checks, mismatches=self._mismatches,
                                 throughput=self._throughput_locked())

    def _expire_locked(self, now: float) -> None:
        horizon = now - self.window_seconds
        while self._done and self._done[0][0] <= horizon:
            self._done.popleft()

    def _throughput_locked(self) -> float:
        if self._started_at is None:
            return 0.0
        now = self._clock()
        self._expire_locked(now)
        span = min(self.window_seconds, now - self._started_at)
        if span <= 0:
            return 0.0
        return sum(items for _, items in self._done) / span

    def _run_one(self) -> None:
        """One worker step: the next batch from the pool, live, and sometimes the oracle."""
        with self._lock:
            seq = self._seq
            self._seq += 1
        batch = self._pool[seq % len(self._pool)]
        check = seq % self.oracle_every == 0
        try:
            # a fresh list each time: swapped code that mutated its input must not
            # corrupt the pool for later batches or for the oracle
            result = logstats.process_batch(list(batch))
        except Exception as exc:
            with self._lock:
                self._errors += 1
            if check:
                self._compare(batch, None, exc)
            if self._on_error is not None:
                self._on_error(exc)
            return
        with self._lock:
            self._batches += 1
            self._items += len(batch)
            now = self._clock()
            self._done.append((now, len(batch)))
            self._expire_locked(now)  # bounded even when nobody reads the throughput
        if check:
            self._compare(batch, result, None)

    def _compare(self, batch: tuple[str, ...], result: logstats.Stats | None,
                 error: Exception | None) -> None:
        lines = list(batch)
        expected = oracle.oracle_process_batch(lines)
        with self._lock:
            self._checks += 1
        if error is None and result == expected:
            return
        with self._lock:
            self._mismatches += 1
        if self._on_mismatch is not None:
            function, detail = oracle.locate_mismatch(logstats, lines)
            if error is not None and function == "":
                function, detail = "process_batch", f"raised {error!r}"
            self._on_mismatch(function or "process_batch", detail or "results differ")


class _Worker(threading.Thread):
    """One workload thread: batch after batch until stopped.

    An exception outside a live batch (a bug in the counters, say) is reported
    through ``on_error`` and the worker goes on; the demo must keep serving.
    """

    def __init__(self, workload: DemoWorkload, index: int) -> None:
        super().__init__(name=f"demo-worker-{index}", daemon=True)
        self._workload = workload
        self.stopped = threading.Event()

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self._workload._run_one()
            except Exception as exc:
                if self._workload._on_error is not None:
                    self._workload._on_error(exc)


class DemoApp:
    """The demo as a hosted app: ``selfmod run --app demo.workload:main``.

    It follows the contract any app can (see the README, "Hosting your own app"):
    called with a stop event and the ``workload.options`` from ``selfmod.yaml``
    as keyword arguments, it serves until the event is set; its ``stats()``
    gives the counters the daemon exports as metrics, with the last oracle
    mismatch so the daemon can say which function differed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._workload: DemoWorkload | None = None
        self._last_mismatch: tuple[str, str] | None = None

    def __call__(self, stop: threading.Event, *, seed: int = 0,
                 workers: int = DEFAULT_WORKERS,
                 oracle_every: int = DEFAULT_ORACLE_EVERY) -> None:
        workload = DemoWorkload(seed=seed, workers=workers, oracle_every=oracle_every,
                                on_mismatch=self._mismatch)
        with self._lock:
            self._workload = workload
        workload.start()
        try:
            stop.wait()
        finally:
            workload.stop()
            workload.join(5.0)

    def _mismatch(self, function: str, detail: str) -> None:
        with self._lock:
            self._last_mismatch = (function, detail)

    def stats(self) -> dict[str, object] | None:
        """The counters now, or None before the workload has started."""
        with self._lock:
            workload, last = self._workload, self._last_mismatch
        if workload is None:
            return None
        s = workload.snapshot()
        return {"items": s.items, "throughput": s.throughput, "errors": s.errors,
                "batches": s.batches, "oracle_checks": s.oracle_checks,
                "oracle_mismatches": s.mismatches,
                "last_mismatch": {"function": last[0], "detail": last[1]} if last else None}


main = DemoApp()
