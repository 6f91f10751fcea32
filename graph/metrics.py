"""Prometheus metrics and the access log, counted at the outermost ASGI layer so that the
whole-operation cache's answers (given before routing) are counted too.

Every label is bounded: paths are the app's routes or "other"; operations are names of
documents that validated, the first MAX_OPERATIONS of them per process, then "(other)";
tag families are a tag's part before "=" (never a tag: those are unbounded).

Under `vajra serve` every process writes its samples to PROMETHEUS_MULTIPROC_DIR and
`/metrics` adds up those of every worker, the dead ones' counters included.
"""

from __future__ import annotations

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
    "(hit, miss, coalesced, bypass).",
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
    """The first `limit` distinct values are their own label, any later one is `other`."""

    def __init__(self, limit: int, other: str = OTHER) -> None:
        self.limit = limit
        self.other = other
        self._known: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        label = self._known.get(value)
        if label is None:
            label = value[:100] if len(self._known) < self.limit else self.other
            if label is not self.other:
                self._known[value] = label
        return label


def family(tag: str) -> str:
    """`threat:source=nvd` -> `threat:source`: what a tag is about, never which one."""
    return tag.partition("=")[0]


class CacheMetrics:
    """Listens to a Cache's counts and breaker (see cache.stats.StatsListener)."""

    def __init__(self, max_families: int = 50) -> None:
        self._lookups: dict[tuple[str, str], Any] = {}
        self._families = Bounded(max_families)
        self._invalidations: dict[str, Any] = {}

    def attach(self, cache: Cache) -> None:
        cache.stats.listener = self
        cache.breaker.on_change = self.breaker
        self.breaker(cache.breaker.state)

    def lookup(self, coordinate: str, status: str) -> None:
        child = self._lookups.get((coordinate, status))
        if child is None:
            child = LOOKUPS.labels(coordinate, status.lower())
            self._lookups[(coordinate, status)] = child
        child.inc()

    def invalidated(self, tag: str) -> None:
        name = self._families(family(tag))
        child = self._invalidations.get(name)
        if child is None:
            child = self._invalidations[name] = INVALIDATIONS.labels(name)
        child.inc()

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
        multiprocess_dir: str | None = None,
    ) -> None:
        self.app = app
        self.database = database
        self.routes = frozenset(routes)
        self.graphql_path = graphql_path
        self.log = log
        self.multiprocess_dir = multiprocess_dir
        self._operations = Bounded(max_operations)
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._latency: dict[tuple[str, str, str], Any] = {}
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
            operation = NONE if name is None else self._operations(name or ANONYMOUS)
        else:
            operation = ""
        cache = scope.get(STATUS, "-")
        counter = self._requests.get((route, operation, status))
        if counter is None:
            counter = REQUESTS.labels(route, operation, str(status))
            self._requests[(route, operation, status)] = counter
        counter.inc()
        histogram = self._latency.get((route, operation, cache))
        if histogram is None:
            histogram = LATENCY.labels(route, operation, cache)
            self._latency[(route, operation, cache)] = histogram
        histogram.observe(seconds)
        self.sync()
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

    def sync(self) -> None:
        """Database statements counted since the last sync (requests and background tasks)."""
        queries = self.database.queries
        if queries != self._queries:
            QUERIES.inc(queries - self._queries)
            self._queries = queries

    def exposition(self) -> bytes:
        """The text format: every worker's samples under `vajra serve`, else this process's."""
        self.sync()
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
    multiprocess.mark_process_dead(pid or os.getpid(), directory)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
