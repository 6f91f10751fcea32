"""The trust rule against a real redis-server: two processes (two caches, two apps) on one
database, Redis killed, paused, full or read-only while a crawler ingests. Whatever happens,
a read that starts after a mutation returned is fresh, nothing fails, and the cache comes
back by itself. (The same matrix over real server processes: tests/test_fault_matrix.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis import asyncio as aioredis

from cache import Cache, RedisBackend
from cache.breaker import CircuitBreaker, State
from graph.app import create_app, sweep_orphans
from graph.settings import Settings
from resolvers.ingest import ingest
from resolvers.store import Database
from tests.conftest import CRAWLER, NOW, add, threat_input
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.redis

STATS = "{ stats { totalThreats } }"
INGEST = "mutation($t: [ThreatInput!]!) { ingestThreats(threats: $t) { inserted } }"
RECOVERY = 10.0


@dataclass
class Process:
    """One server process, in this one: its cache and an HTTP client on its app."""

    cache: Cache
    http: httpx.AsyncClient

    def _subscriber_unconfirmed(self) -> int:
        assert self.cache._subscriber is not None
        return self.cache._subscriber.unconfirmed

    async def total(self) -> tuple[int, str | None]:
        response = await self.http.post("/graphql", json={"query": STATS})
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        return body["data"]["stats"]["totalThreats"], response.headers.get("x-cache")

    async def ingest(self, n: int) -> None:
        threat = {
            "source": "nvd",
            "externalId": f"CVE-2026-{9000 + n}",
            "title": f"Flaw {n}",
            "severity": "HIGH",
            "category": "vulnerability",
            "publishedAt": "2026-03-14T10:00:00Z",
        }
        response = await self.http.post(
            "/graphql",
            json={"query": INGEST, "variables": {"t": [threat]}},
            headers={"Authorization": f"Bearer {CRAWLER}"},
        )
        assert response.json() == {"data": {"ingestThreats": {"inserted": 1}}}, response.text


@contextlib.asynccontextmanager
async def process(
    db: Database, server: RedisServer, *, poll: float = 1.0, url: str | None = None
) -> AsyncIterator[Process]:
    cache = Cache(
        RedisBackend(url or server.url),
        namespace="p",
        schema_version="t",
        epochs=db.epochs,  # the database's epoch, as in production
        poll=poll,
    )
    settings = Settings(DATABASE_URL=db.url, VAJRA_CRAWLER_TOKEN=CRAWLER)
    app = create_app(settings, db=db, cache=cache)
    await cache.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as http:
            yield Process(cache, http)
    finally:
        await cache.close()


async def listening(*processes: Process) -> None:
    async with asyncio.timeout(5):
        for p in processes:
            while not p.cache.trust.listening or not p.cache.trust.listening():
                await asyncio.sleep(0.01)


async def warm(p: Process, expected: int) -> None:
    """Read until this process answers from its local tier."""
    async with asyncio.timeout(RECOVERY):
        while (await p.total()) != (expected, "HIT"):
            await asyncio.sleep(0.01)


async def fresh_and_back(processes: list[Process], expected: int) -> None:
    """Every answer is `expected` and the cache answers HIT again, by itself."""
    deadline = time.monotonic() + RECOVERY
    back = set()
    while len(back) < len(processes):
        assert time.monotonic() < deadline, f"the cache did not come back in {back}"
        for i, p in enumerate(processes):
            total, status = await p.total()
            assert total == expected, f"process {i} served a stale total {total} ({status})"
            if status == "HIT":
                back.add(i)
        await asyncio.sleep(0.02)


async def redis(server: RedisServer, *command: Any) -> Any:
    client = aioredis.Redis.from_url(server.url)
    try:
        return await client.execute_command(*command)
    finally:
        await client.aclose()


async def test_whole_operation_hits_alone_bring_the_cache_back_after_a_restart(
    sqlite_db: Database, redis_server: RedisServer
) -> None:
    await add(sqlite_db, threat_input(1))
    async with process(sqlite_db, redis_server) as a:
        await listening(a)
        await warm(a, 1)
        redis_server.kill()
        for _ in range(5):
            assert (await a.total())[0] == 1
        redis_server.start()
        await fresh_and_back([a], 1)
        assert a.cache.breaker.state is State.CLOSED
        assert (await a.http.get("/health")).json()["redis_cache"] == "connected"


async def test_a_mutation_returns_once_every_process_has_dropped_what_it_changed(
    sqlite_db: Database, redis_server: RedisServer
) -> None:
    await add(sqlite_db, threat_input(1))
    async with process(sqlite_db, redis_server) as a, process(sqlite_db, redis_server) as b:
        await listening(a, b)
        for n in range(2, 12):
            await warm(b, n - 1)  # B answers from its local tier...
            await a.ingest(n)
            assert (await b.total())[0] == n  # ...and not a moment after A's mutation returned
        assert a._subscriber_unconfirmed() == 0  # every message was acknowledged, none timed out
        assert await sqlite_db.orphans(0) == []  # and each ingest settled its pending row


async def test_a_listener_that_never_answers_delays_a_mutation_by_one_window_at_most(
    sqlite_db: Database, redis_server: RedisServer
) -> None:
    await add(sqlite_db, threat_input(1))
    silent = aioredis.Redis.from_url(redis_server.url)
    pubsub = silent.pubsub()
    await pubsub.subscribe("p:invalidations:{p}")  # hears everything, acknowledges nothing
    try:
        async with process(sqlite_db, redis_server) as a:
            await listening(a)
            started = time.monotonic()
            await a.ingest(2)
            took = time.monotonic() - started
            assert a._subscriber_unconfirmed() == 1
            assert took < 5 * a.cache.trust.window, took  # bounded: it does not hang
            assert (await a.total())[0] == 2
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await silent.aclose()


async def test_a_process_cut_off_from_redis_alone_returns_once_the_others_know(
    sqlite_db: Database, redis_server: RedisServer
) -> None:
    await add(sqlite_db, threat_input(1))
    cut_off = f"redis://127.0.0.1:{free_port()}/0"  # A reaches no Redis; B reaches it fine
    async with (
        process(sqlite_db, redis_server) as b,
        process(sqlite_db, redis_server, url=cut_off) as a,
    ):
        await listening(b)
        await warm(b, 1)
        await a.ingest(2)  # nobody hears A: it returns once B's poll must have run
        assert a.cache.trust.unannounced
        assert (await b.total())[0] == 2


async def test_an_ingest_while_redis_is_hung_is_never_served_stale(
    sqlite_db: Database, redis_server: RedisServer
) -> None:
    await add(sqlite_db, threat_input(1))
    async with process(sqlite_db, redis_server) as a, process(sqlite_db, redis_server) as b:
        await listening(a, b)
        await warm(a, 1)
        await warm(b, 1)
        redis_server.pause()
        try:
            for _ in range(10):  # A notices (its fallback answers); B is left alone
                assert (await a.total())[0] == 1
                await asyncio.sleep(0.05)
            await a.ingest(2)
            assert a.cache.stats.lost_invalidations == 1
            # Straight after the mutation returned, from both, while Redis is still hung.
            assert (await b.total())[0] == 2
            assert (await a.total())[0] == 2
        finally:
            redis_server.resume()
        await fresh_and_back([a, b], 2)


async def test_an_invalidation_pending_when_its_process_dies_is_kept_by_the_database(
    sqlite_db: Database, redis_server: RedisServer
) -> None:
    await add(sqlite_db, threat_input(1))
    async with process(sqlite_db, redis_server) as b:
        await listening(b)
        async with process(sqlite_db, redis_server) as a:
            await listening(a)
            await warm(a, 1)
            redis_server.pause()
            try:
                await a.ingest(2)  # cannot reach Redis
            finally:
                redis_server.resume()
        # A is gone with whatever it had in memory; a new process starts.
        async with process(sqlite_db, redis_server) as c:
            await listening(c)
            await fresh_and_back([b, c], 2)


@pytest.mark.parametrize("fault", ["out-of-memory", "read-only"])
async def test_an_ingest_while_redis_refuses_writes_is_never_served_stale(
    sqlite_db: Database, redis_server: RedisServer, fault: str
) -> None:
    await add(sqlite_db, threat_input(1))
    async with process(sqlite_db, redis_server) as a, process(sqlite_db, redis_server) as b:
        await listening(a, b)
        await warm(a, 1)
        await warm(b, 1)
        if fault == "out-of-memory":
            await redis(redis_server, "CONFIG", "SET", "maxmemory-policy", "noeviction")
            await redis(redis_server, "CONFIG", "SET", "maxmemory", "1")
        else:
            await redis(redis_server, "REPLICAOF", "127.0.0.1", str(free_port()))
        try:
            await a.ingest(2)
            assert a.cache.stats.lost_invalidations == 1, "the fault did not refuse the bump"
            for _ in range(3):
                assert (await b.total())[0] == 2
                assert (await a.total())[0] == 2
        finally:
            if fault == "out-of-memory":
                await redis(redis_server, "CONFIG", "SET", "maxmemory", "0")
            else:
                await redis(redis_server, "REPLICAOF", "NO", "ONE")
        await fresh_and_back([a, b], 2)


async def test_processes_on_two_databases_never_see_each_others_answers(
    tmp_path: Any, redis_server: RedisServer
) -> None:
    one, two = (Database(f"sqlite+aiosqlite:///{tmp_path / name}") for name in ("1.db", "2.db"))
    for db in (one, two):
        await db.create_schema()
    await add(one, threat_input(1))
    await add(two, threat_input(1), threat_input(2))
    try:
        async with process(one, redis_server) as a, process(two, redis_server) as b:
            await listening(a, b)
            for _ in range(5):
                assert (await a.total())[0] == 1
                assert (await b.total())[0] == 2
    finally:
        await one.close()
        await two.close()


async def test_another_process_is_fresh_after_an_ingest_while_redis_is_down(
    sqlite_db: Database, redis_server: RedisServer
) -> None:
    await add(sqlite_db, threat_input(1))
    async with process(sqlite_db, redis_server) as a, process(sqlite_db, redis_server) as b:
        await listening(a, b)
        redis_server.kill()
        for _ in range(4):  # no fallback here: B answers from the origin
            assert (await b.total())[0] == 1
        reads = b.cache.trust.epoch_reads
        await a.ingest(2)
        assert (await b.total())[0] == 2
        assert b.cache.trust.epoch_reads > reads  # degraded: the epoch is read per operation
        assert b.cache.fallback is None
        redis_server.start()
        await fresh_and_back([a, b], 2)


async def test_an_epoch_change_behind_the_servers_back_is_seen_within_the_poll(
    sqlite_db: Database, redis_server: RedisServer
) -> None:
    await add(sqlite_db, threat_input(1))
    async with process(sqlite_db, redis_server, poll=0.2) as a:
        await listening(a)
        await warm(a, 1)
        await add(sqlite_db, threat_input(2))  # written behind the cache's back...
        await sqlite_db.epochs.bump()  # ...as `vajra cache invalidate` then records
        assert (await a.total()) == (1, "HIT")  # not announced: the poll will see it
        started = time.monotonic()
        async with asyncio.timeout(2):
            while (await a.total())[0] != 2:
                await asyncio.sleep(0.01)
        assert time.monotonic() - started < 0.2 + 0.5


async def test_an_ingest_whose_process_died_before_invalidating_is_covered_by_the_sweep(
    sqlite_db: Database, redis_server: RedisServer
) -> None:
    await add(sqlite_db, threat_input(1))
    async with process(sqlite_db, redis_server) as a:
        await listening(a)
        await warm(a, 1)
        # Another process commits an ingest and dies before invalidating anything: its
        # mutation never returned, but the row it committed says the cache was not told.
        outcome = await ingest(sqlite_db, [threat_input(2)], now=NOW)
        assert outcome.pending is not None
        assert (await a.total()) == (1, "HIT")
        assert await sweep_orphans(sqlite_db, a.cache, older_than=0) == 1
        assert (await a.total())[0] == 2
        assert await sqlite_db.orphans(0) == []  # covered once, not again


def test_half_open_lets_one_probe_through_and_a_silent_probe_does_not_wedge_it() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failures=1, cooldown=1.0, probe_timeout=2.0, clock=lambda: now[0])
    breaker.failure()
    assert not breaker.allow()
    now[0] = 1.0
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # one at a time
    now[0] = 3.0
    assert breaker.allow()  # the first probe never reported: another may try
    assert breaker.success()
    assert breaker.allow()
