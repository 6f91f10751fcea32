"""Prometheus metrics and the access log, counted at the outermost ASGI layer so that the
whole-operation cache's answers (given before routing) are counted too.

Every label is bounded: paths are the app's routes or "other"; operations are names of
documents that validated, the first MAX_OPERATIONS of them per process, then "(other)";
tag families are a tag's part before "=" (never a tag: those are unbounded).

Under `vajra serve` every process writes its samples to PROMETHEUS_MULTIPROC_DIR and
`/metrics` adds up those of every worker, the dead ones' counters included. A request is
tallied in plain dicts and written there once a second (and before a scrape): a write in that
mode is a locked mmap store, dearer than the warm whole-operation hit it would count.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from cache import Cache
from cache.breaker import State
from cache.operation import NAME, STATUS
from resolvers.store import Database

access = logging.getLogger("vajra.access")

# The classic text format, which every Prometheus reads (names here are plain ASCII).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_OPERATIONS = 100
FLUSH_EVERY = 1.0  # seconds: how old a worker's counts in /metrics may be
OTHER = "(other)"
NONE = "(none)"  # a GraphQL request whose document did not validate (or never got that far)
ANONYMOUS = "(anonymous)"

# From a warm whole-operation hit (~100 us) to a slow ingest.
BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
)
BUCKETS += (0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "vajra_http_requests",
    "HTTP requests answered, by path, GraphQL operation and status.",
    ["path", "operation", "status"],
)
LATENCY = Histogram(
    "vajra_http_request_duration_seconds",
    "Time from the request to the last byte of its answer, by path, operation and X-Cache.",
    ["path", "operation", "cache"],
    buckets=BUCKETS,
)
LOOKUPS = Counter(
    "vajra_cache_lookups",
    "Cache lookups by field coordinate ((operation): whole operations) and result "
    "(hit, miss, coalesced, stale, bypass).",
    ["coordinate", "result"],
)
BACKEND_ERRORS = Counter("vajra_cache_backend_errors", "Redis calls that failed.")
BREAKER = Gauge(
    "vajra_cache_breaker",
    "Live processes whose Redis circuit breaker is in each state.",
    ["state"],
    multiprocess_mode="livesum",
)
INVALIDATIONS = Counter(
    "vajra_cache_invalidations",
    'Tags invalidated by this service, by family (the tag up to "="; "*": a new epoch).',
    ["family"],
)
QUERIES = Counter("vajra_database_queries", "SQL statements run (transaction control aside).")


class Bounded:
    """The first `limit` distinct values are their own label, any later one is `other`;
    `reserved` values always are, so that nobody can push them out by coming first."""

    def __init__(self, limit: int, other: str = OTHER, reserved: Iterable[str] = ()) -> None:
        self.other = other
        # read directly on hot paths: a call costs more
        self.known: dict[str, str] = {value: value[:100] for value in reserved}
        self.limit = limit + len(self.known)

    def __call__(self, value: str) -> str:
        label = self.known.get(value)
        if label is None:
            label = value[:100] if len(self.known) < self.limit else self.other
            if label is not self.other:
                self.known[value] = label
        return label


def family(tag: str) -> str:
    """`threat:source=nvd` -> `threat:source`: what a tag is about, never which one."""
    return tag.partition("=")[0]


class CacheMetrics:
    """Listens to a Cache's counts and breaker (see cache.stats.StatsListener). Lookups, one
    or more per request, are tallied here and written by `flush`; the rare events at once."""

    def __init__(self, max_families: int = 50) -> None:
        self._lookups: dict[tuple[str, str], int] = {}
        self._families = Bounded(max_families)

    def attach(self, cache: Cache) -> None:
        cache.stats.listener = self
        cache.breaker.on_change = self.breaker
        self.breaker(cache.breaker.state)

    def lookup(self, coordinate: str, status: str) -> None:
        key = (coordinate, status)
        self._lookups[key] = self._lookups.get(key, 0) + 1

    def invalidated(self, tag: str) -> None:
        INVALIDATIONS.labels(self._families(family(tag))).inc()

    def backend_error(self) -> None:
        BACKEND_ERRORS.inc()

    @staticmethod
    def breaker(state: State) -> None:
        for each in State:
            BREAKER.labels(each.value).set(1 if each is state else 0)

    @staticmethod
    def detach() -> None:
        for each in State:
            BREAKER.labels(each.value).set(0)

    def flush(self) -> None:
        pending, self._lookups = self._lookups, {}
        for (coordinate, status), count in pending.items():
            LOOKUPS.labels(coordinate, status.lower()).inc(count)


_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


def safe(text: str, limit: int = 200) -> str:
    """Untrusted text for a log line: printable ASCII, quotes and the rest escaped, bounded."""
    text = text[:limit]
    return (
        _UNSAFE.sub(lambda m: json.dumps(m.group())[1:-1], text) if _UNSAFE.search(text) else text
    )


class Observe:
    """Outermost ASGI middleware: counts and times every HTTP request, and with `log` writes
    one access line each: client, method, path, operation, status, cache status, duration."""

    def __init__(
        self,
        app: Any,
        database: Database,
        *,
        routes: Iterable[str],
        graphql_path: str = "/graphql",
        log: bool = False,
        max_operations: int = MAX_OPERATIONS,
        reserved_operations: Iterable[str] = (),
        multiprocess_dir: str | None = None,
        cache_metrics: CacheMetrics | None = None,
    ) -> None:
        self.app = app
        self.database = database
        self.routes = frozenset(routes)
        self.graphql_path = graphql_path
        self.log = log
        self.multiprocess_dir = multiprocess_dir
        self._operations = Bounded(max_operations, reserved=reserved_operations)
        self._known = self._operations.known
        self.cache_metrics = cache_metrics
        # Tallied per request, written to prometheus-client by `flush` (every FLUSH_EVERY
        # seconds, and before a scrape): in multiprocess mode a write is a locked mmap store
        # and a getpid() call, a cost a warm whole-operation hit should not pay five times.
        # (path, operation, status, cache) -> bucket counts, then the sum of durations.
        self._tally: dict[tuple[str, str, int, str], list[float]] = {}
        self._queries = database.queries
        if log:
            access.setLevel(logging.INFO)  # whatever LOG_LEVEL says: it was asked for

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def observed(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            self._record(scope, status or 500, time.perf_counter() - started)

    def _record(self, scope: MutableMapping[str, Any], status: int, seconds: float) -> None:
        path = scope["path"]
        route = path if path in self.routes else "other"
        if route == self.graphql_path:
            name = scope.get(NAME)
            if name is None:
                operation = NONE
            else:
                operation = self._known.get(name) or self._operations(name or ANONYMOUS)
        else:
            operation = ""
        cache = scope.get(STATUS, "-")
        key = (route, operation, status, cache)
        row = self._tally.get(key)
        if row is None:
            row = self._tally[key] = [0.0] * (len(BUCKETS) + 2)
        row[bisect.bisect_left(BUCKETS, seconds)] += 1  # a bucket counts values <= its bound
        row[-1] += seconds
        if self.log:
            client = scope.get("client") or ("-", 0)
            access.info(
                '%s "%s %s" op=%s status=%d cache=%s %.2fms',
                client[0],
                scope["method"],
                safe(path),
                safe(operation or "-"),
                status,
                cache,
                seconds * 1000,
            )

    def flush(self) -> None:
        """What was tallied since the last flush, into prometheus-client's values."""
        tally, self._tally = self._tally, {}
        for (route, operation, status, cache), row in tally.items():
            REQUESTS.labels(route, operation, str(status)).inc(sum(row[:-1]))
            # Histogram.observe takes one value at a time; its buckets and sum are counters
            # that take a sum (tests/test_metrics.py would see them go).
            histogram = LATENCY.labels(route, operation, cache)
            for bucket, observed in zip(histogram._buckets, row[:-1], strict=True):
                if observed:
                    bucket.inc(observed)
            histogram._sum.inc(row[-1])
        if self.cache_metrics is not None:
            self.cache_metrics.flush()
        self.sync()

    async def flushing(self) -> None:
        """Flush every FLUSH_EVERY seconds, until cancelled (and once more then)."""
        try:
            while True:
                await asyncio.sleep(FLUSH_EVERY)
                self.flush()
        finally:
            self.flush()

    def sync(self) -> None:
        """Database statements counted since the last sync (requests and background tasks)."""
        queries = self.database.queries
        if queries != self._queries:
            QUERIES.inc(queries - self._queries)
            self._queries = queries

    def exposition(self) -> bytes:
        """The text format: every worker's samples under `vajra serve`, else this process's
        (other workers' counts are at most FLUSH_EVERY seconds old)."""
        self.flush()
        if self.multiprocess_dir is None:
            return generate_latest(REGISTRY)
        forget_dead(self.multiprocess_dir)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
            registry, path=self.multiprocess_dir
        )
        return generate_latest(registry)


def forget_dead(directory: str) -> None:
    """Live gauges of processes that are gone (killed: nothing ran on their way out)."""
    for file in Path(directory).glob("gauge_live*_*.db"):
        pid = file.stem.rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            gone(directory, int(pid))


def gone(directory: str, pid: int | None = None) -> None:
    """A process (this one by default) no longer counts in the live gauges."""
    with contextlib.suppress(FileNotFoundError):  # another worker's scrape was first
        multiprocess.mark_process_dead(pid or os.getpid(), directory)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
