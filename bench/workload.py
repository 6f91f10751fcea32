"""Readers against a crawler, in one process, on a real Redis: how many reads are stale, how
many hit, how many reach the database. Shared by the stale-read harness and the mixed-workload
benchmark.

A read is stale when it started after a mutation had returned and does not show it: every
mutation inserts one new threat, so a read that starts after k mutations returned must count
at least base + k threats in every field that counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from redis.exceptions import RedisError

from cache import Cache, CachePolicy, RedisBackend
from cache.codec import Decoder, encode
from cache.exceptions import BackendError
from cache.keys import canonical_args
from cache.layer import Lookup
from graph.app import create_app
from graph.context import Context, Tokens
from graph.schema import schema
from graph.settings import Settings
from resolvers.store import Database

TOKEN = "bench-crawler"
INGEST = "mutation($t: [ThreatInput!]!) { ingestThreats(threats: $t) { inserted } }"
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO")
DASHBOARD = """{
  stats { totalThreats }
  threats(limit: 10) { total items { id } }
  trend(days: 10) { count }
  severityBreakdown { count }
  sourceBreakdown { count }
}"""
SOURCES = ("nvd", "github-advisory", "otx", "urlhaus", "phishtank", "malwarebazaar", "cisa-kev")


class NaiveCache(Cache):
    """The design we replace: GET, else compute and SET; on a write, delete the families
    (the original service cleared `stats:*`, `threats:*` and `charts:*` on every ingest).
    A slow reader that computed before the write can store its old answer after the delete."""

    async def resolve(
        self,
        policy: CachePolicy,
        coordinate: str,
        args: dict[str, Any],
        compute: Callable[[], Any],
        decode: Decoder,
        identity: str | None = None,
    ) -> tuple[Any, Lookup]:
        assert isinstance(self.backend, RedisBackend)
        key = self.keys.entry(policy.group, coordinate, canonical_args(args))
        try:  # the original's "automatic fallback": Redis trouble is a miss
            raw = await self.backend.client.get(key)
        except RedisError:
            raw = None
        if raw is not None:
            self.stats.record(coordinate, "HIT")
            return decode(orjson.loads(raw)), Lookup("HIT", key, None)
        self.stats.record(coordinate, "MISS")
        value = await compute()
        ttl = self.max_age.get(policy.group, policy.max_age)
        with contextlib.suppress(RedisError):
            await self.backend.client.set(key, encode(value), ex=ttl)
        return value, Lookup("MISS", key, None)

    async def invalidate(self, tags: Any) -> None:
        assert isinstance(self.backend, RedisBackend)
        for group in ("stats", "threats", "charts"):
            self.stats.invalidations[group] += 1
            with contextlib.suppress(BackendError):
                await self.backend.clear(self.keys.entries_of(group))


def _reads(rng: random.Random, ids: int) -> str:
    """The dashboard, plus what analysts click: a filtered list and a few of the threats
    the dashboards show (among the 100 most recently loaded)."""
    severity, source = rng.choice(SEVERITIES), rng.choice(SOURCES)
    picks = " ".join(
        f't{i}: threat(id: "{rng.randint(max(1, ids - 99), ids)}") {{ id title }}' for i in range(3)
    )
    return f"""{{
      stats {{ totalThreats }}
      threats(limit: 10) {{ total items {{ id }} }}
      trend(days: 10) {{ count }}
      severityBreakdown {{ count }}
      sourceBreakdown {{ count }}
      bySeverity: threats(filter: {{severity: [{severity}]}}) {{ total }}
      bySource: threats(filter: {{source: "{source}"}}) {{ total }}
      {picks}
    }}"""


def _counts(data: dict[str, Any]) -> list[int]:
    """Every field of a read that counts all threats."""
    return [
        data["stats"]["totalThreats"],
        data["threats"]["total"],
        sum(p["count"] for p in data["severityBreakdown"]),
    ]


@dataclass
class Outcome:
    reads: int = 0
    stale: int = 0
    errors: int = 0
    mutations: int = 0
    database_queries: int = 0
    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    read_latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def hit_rate(self) -> float:
        """Hits over every lookup (a coalesced wait is not a hit)."""
        return self.hits / max(self.hits + self.misses + self.coalesced, 1)

    @property
    def served_rate(self) -> float:
        """Lookups that cost the origin nothing: hits and coalesced waits."""
        return (self.hits + self.coalesced) / max(self.hits + self.misses + self.coalesced, 1)


async def run(
    db: Database,
    cache: Cache,
    *,
    readers: int,
    mutations: int,
    interval: float = 0.0,
    seconds: float | None = None,
    warmup: float = 0.0,
    seed: int = 7,
    over_http: bool = False,
) -> Outcome:
    """`readers` tasks read while one crawler runs `mutations` ingests, `interval` apart;
    counting starts after `warmup` seconds of reading alone (a warm, steady cache).
    `over_http` sends everything through the ASGI app, whole-operation cache included, and
    reads the dashboard alone (one operation, so that whole-operation hits happen)."""
    base = await db.count()
    outcome = Outcome()
    returned = 0  # mutations that have returned
    done = asyncio.Event()
    tokens = Tokens(crawler=TOKEN)

    def context(authorization: str | None = None) -> Context:
        return Context(
            db=db, tokens=tokens, authorization=authorization, cache=cache, cache_debug=True
        )

    client = None
    if over_http:
        await cache.start()
        if cache._subscriber is not None:
            await asyncio.wait_for(cache._subscriber.subscribed.wait(), 10)
        app = create_app(
            Settings(DATABASE_URL=db.url, VAJRA_CRAWLER_TOKEN=TOKEN), db=db, cache=cache
        )
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")

    async def execute(
        query: str, variables: Any = None, token: str | None = None
    ) -> tuple[Any, list[str]]:
        """(data or None on errors, the cache statuses seen)."""
        if client is None:
            authorization = f"Bearer {token}" if token else None
            result = await schema.execute(
                query, variable_values=variables, context_value=context(authorization)
            )
            statuses = [r["status"] for r in (result.extensions or {}).get("cache", [])]
            return (None if result.errors else result.data), statuses
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        body = response.json()
        await asyncio.sleep(0)  # a server interleaves requests; an L1 hit never waits
        return (None if "errors" in body else body["data"]), [response.headers.get("x-cache", "")]

    async def reader(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        while not done.is_set():
            expected = base + returned
            started = time.perf_counter()
            data, statuses = await execute(DASHBOARD if over_http else _reads(rng, base))
            outcome.read_latencies.append(time.perf_counter() - started)
            outcome.reads += 1
            if data is None:
                outcome.errors += 1
                continue
            if min(_counts(data)) < expected:
                outcome.stale += 1
            for status in statuses:
                if status == "HIT":
                    outcome.hits += 1
                elif status == "MISS":
                    outcome.misses += 1
                elif status == "COALESCED":
                    outcome.coalesced += 1

    async def crawler() -> None:
        nonlocal returned, outcome
        if warmup:
            await asyncio.sleep(warmup)
            outcome = Outcome()
        started = time.perf_counter()
        queries = db.queries
        now = dt.datetime.now(dt.UTC)
        deadline = time.monotonic() + seconds if seconds else None
        for i in range(mutations):
            if deadline is not None and time.monotonic() > deadline:
                break
            threat = {
                "source": SOURCES[i % len(SOURCES)],
                "externalId": f"bench-{seed}-{time.time_ns()}-{i}",
                "title": f"Benchmark threat {i}",
                "severity": SEVERITIES[i % len(SEVERITIES)],
                "category": "vulnerability",
                "publishedAt": (now - dt.timedelta(minutes=i % 600)).isoformat(),
            }
            data, _ = await execute(INGEST, {"t": [threat]}, TOKEN)
            if data is None:
                outcome.errors += 1
            else:
                returned += 1
                outcome.mutations += 1
            # On a fixed schedule: one ingest every `interval`, however long each one takes.
            await asyncio.sleep(max(0.0, started + (i + 1) * interval - time.perf_counter()))
        done.set()
        outcome.database_queries = db.queries - queries
        outcome.seconds = time.perf_counter() - started

    try:
        await asyncio.gather(crawler(), *(reader(n) for n in range(readers)))
    finally:
        if client is not None:
            await client.aclose()
    return outcome
