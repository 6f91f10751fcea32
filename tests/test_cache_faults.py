"""Fault injection against a real redis-server: killed, hung (SIGSTOP), restarted.

Whatever Redis does, the cache never fails a request: every answer is the origin's, the
breaker opens so nobody keeps paying the timeout, and the cache comes back by itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from redis import asyncio as aioredis

from cache import Cache, CachePolicy, MemoryBackend, RedisBackend
from cache.breaker import State
from cache.layer import Lookup
from graph.app import create_app
from graph.context import Context, Tokens
from graph.schema import schema
from graph.settings import Settings
from resolvers.store import Database
from tests.conftest import ADMIN, CRAWLER, NOW, add, threat_input
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

POLICY = CachePolicy(max_age=60, group="faults", tags=lambda _args: ["toy"])
# Long enough for a probe after the first 0.5 s cooldown and a second one after 1 s.
RECOVERY_DEADLINE = 5.0

DASHBOARD = "{ stats { totalThreats } threats(limit: 3) { total } trend(days: 3) { count } }"
STATS = "{ stats { totalThreats } }"
INGEST = """mutation($threats: [ThreatInput!]!) {
  ingestThreats(threats: $threats) { inserted updated unchanged }
}"""


# -- helpers -----------------------------------------------------------------------------------


@asynccontextmanager
async def cache_on(server: RedisServer) -> AsyncIterator[Cache]:
    cache = Cache(
        RedisBackend(server.url), namespace="t", schema_version="1", fallback=MemoryBackend()
    )
    try:
        yield cache
    finally:
        await cache.close()


class Origin:
    """A toy origin: counts its calls; answers `[version, n]`; may run a hook on each call."""

    def __init__(self) -> None:
        self.calls = 0
        self.version = 1
        self.delay = 0.0
        self.on_call: Callable[[], None] | None = None

    def compute(self, n: int) -> Callable[[], Awaitable[list[int]]]:
        async def run() -> list[int]:
            self.calls += 1
            if self.on_call is not None:
                self.on_call()
            if self.delay:
                await asyncio.sleep(self.delay)
            return [self.version, n]

        return run


def state(cache: Cache) -> State:
    """The breaker's state now (a call, so that type checkers do not pin it after a check)."""
    return cache.breaker.state


async def get(cache: Cache, origin: Origin, n: int = 0) -> tuple[list[int], Lookup]:
    value, lookup = await cache.resolve(POLICY, "Query.toy", {"n": n}, origin.compute(n), list)
    return value, lookup


async def get_all(cache: Cache, origin: Origin, ns: range) -> list[list[int]]:
    """Concurrent lookups of every `n`; none may raise."""
    results = await asyncio.gather(*(get(cache, origin, n) for n in ns), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures
    return [r[0] for r in results if not isinstance(r, BaseException)]


async def in_redis(server: RedisServer, key: str | None) -> bool:
    """Is `key` stored in the redis-server itself (not in some process's fallback)?"""
    assert key is not None
    client = aioredis.Redis.from_url(server.url)
    try:
        return bool(await client.exists(key))
    finally:
        await client.aclose()


async def until_served_from_redis(
    server: RedisServer, cache: Cache, origin: Origin, expected: list[int], n: int = 0
) -> list[str]:
    """Read until the cache answers HIT from Redis itself; every answer on the way must be
    `expected`. Returns the statuses seen."""
    seen: list[str] = []
    deadline = time.monotonic() + RECOVERY_DEADLINE
    while time.monotonic() < deadline:
        value, lookup = await get(cache, origin, n)
        assert value == expected, f"served {value} after {seen}"
        seen.append(lookup.status)
        if (
            lookup.status == "HIT"
            and state(cache) is State.CLOSED
            and await in_redis(server, lookup.key)
        ):
            return seen
        await asyncio.sleep(0.05)
    pytest.fail(f"the cache did not come back to Redis by itself; statuses: {seen}")


async def until_connected(cache: Cache) -> None:
    """Until `cache.status()` says connected: by then an invalidation the cache could not
    deliver (a call that timed out, its epoch pending) has been settled in Redis."""
    deadline = time.monotonic() + RECOVERY_DEADLINE
    seen = [await cache.status()]
    while seen[-1] != "connected" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        seen.append(await cache.status())
    assert seen[-1] == "connected", seen


def gql_context(db: Database, cache: Cache | None, authorization: str | None = None) -> Context:
    return Context(
        db=db,
        tokens=Tokens(crawler=CRAWLER, admin=ADMIN),
        authorization=authorization,
        clock=lambda: NOW,
        cache=cache,
        cache_debug=cache is not None,
    )


async def run(db: Database, cache: Cache | None, query: str, **variables: Any) -> Any:
    result = await schema.execute(
        query, variable_values=variables or None, context_value=gql_context(db, cache)
    )
    assert result.errors is None, result.errors
    return result


async def total_threats(db: Database, cache: Cache) -> tuple[int, str]:
    """`stats.totalThreats` through `cache`, and the field's cache status."""
    result = await run(db, cache, STATS)
    [record] = result.extensions["cache"]
    return result.data["stats"]["totalThreats"], record["status"]


def crawled(n: int) -> dict[str, Any]:
    return {
        "source": "nvd",
        "externalId": f"CVE-2026-{1000 + n}",
        "title": f"OpenSSL flaw number {n}",
        "severity": "HIGH",
        "category": "vulnerability",
        "publishedAt": "2026-03-14T10:00:00Z",
    }


# -- layer level: toy computes -----------------------------------------------------------------


async def test_redis_killed_between_requests_is_a_miss_not_an_error(
    redis_server: RedisServer,
) -> None:
    origin = Origin()
    async with cache_on(redis_server) as cache:
        assert (await get(cache, origin))[1].status == "MISS"
        value, lookup = await get(cache, origin)
        assert (value, lookup.status) == ([1, 0], "HIT")
        assert await in_redis(redis_server, lookup.key)

        redis_server.kill()
        origin.version = 2  # only the origin can answer this now: Redis has the old value
        for _ in range(4):
            value, _lookup = await get(cache, origin)
            assert value == [2, 0]
        assert state(cache) is State.OPEN
        assert cache.stats.backend_errors >= 3

        # Open: no call pays for Redis any more.
        errors = cache.stats.backend_errors
        for n in range(1, 6):
            assert (await get(cache, origin, n))[0] == [2, n]
        assert cache.stats.backend_errors == errors

        redis_server.start()
        calls = origin.calls
        seen = await until_served_from_redis(redis_server, cache, origin, [2, 0])
        assert "MISS" in seen, "the restarted Redis is empty: the value must be computed again"
        assert origin.calls > calls
        assert await cache.status() == "connected"


async def test_redis_killed_during_a_concurrent_batch_every_call_answers(
    redis_server: RedisServer,
) -> None:
    origin = Origin()
    async with cache_on(redis_server) as cache:
        for n in range(10):  # warm: these are HITs if their read beats the kill
            await get(cache, origin, n)
        assert (await get(cache, origin, 9))[1].status == "HIT"

        # The first computation kills Redis while the other lookups, leases and writes of
        # the batch are in flight.
        def kill_once() -> None:
            if redis_server.process is not None:
                redis_server.kill()

        origin.on_call, origin.delay = kill_once, 0.01
        assert await get_all(cache, origin, range(40)) == [[1, n] for n in range(40)]
        assert redis_server.process is None, "the batch never reached the origin"
        assert cache.stats.backend_errors > 0, "nothing of the batch was left for the kill"

        # A second batch with Redis already gone.
        origin.on_call = None
        assert await get_all(cache, origin, range(40, 80)) == [[1, n] for n in range(40, 80)]
        assert state(cache) is State.OPEN

        redis_server.start()
        await until_served_from_redis(redis_server, cache, origin, [1, 3], n=3)


async def test_hung_redis_still_answers_and_stops_waiting_once_the_breaker_opens(
    redis_server: RedisServer,
) -> None:
    origin = Origin()
    async with cache_on(redis_server) as cache:
        await get(cache, origin)
        assert (await get(cache, origin))[1].status == "HIT"

        redis_server.pause()
        try:
            # Concurrent requests against a hung Redis: each waits for one timeout, at most.
            started = time.monotonic()
            assert await get_all(cache, origin, range(1, 21)) == [[1, n] for n in range(1, 21)]
            assert time.monotonic() - started < 1.0

            for _ in range(5):
                if state(cache) is State.OPEN:
                    break
                assert (await get(cache, origin, 0))[0] == [1, 0]
            assert state(cache) is State.OPEN

            # 20 sequential calls would take 20 x 100 ms if each still waited for Redis.
            started = time.monotonic()
            for n in range(100, 120):
                assert (await get(cache, origin, n))[0] == [1, n]
            assert time.monotonic() - started < 1.0
        finally:
            redis_server.resume()

        await until_served_from_redis(redis_server, cache, origin, [1, 0])


async def test_redis_restart_serves_no_stale_value_and_caches_again(
    redis_server: RedisServer,
) -> None:
    origin = Origin()
    async with cache_on(redis_server) as cache:
        await get(cache, origin)
        assert (await get(cache, origin))[0] == [1, 0]

        # A restart between two requests: the pooled connection is dead, the data gone.
        redis_server.restart()
        origin.version = 2
        calls = origin.calls
        value, lookup = await get(cache, origin)
        assert (value, lookup.status) == ([2, 0], "MISS")
        assert origin.calls == calls + 1
        await until_served_from_redis(redis_server, cache, origin, [2, 0])

        # A longer outage with a mutation in it, then a restart: the value the fallback
        # learned before the mutation is never served, before or after Redis is back.
        redis_server.kill()
        for _ in range(3):
            assert (await get(cache, origin))[0] == [2, 0]
        assert state(cache) is State.OPEN
        origin.version = 3
        await cache.invalidate(["toy"])
        assert (await get(cache, origin))[0] == [3, 0]
        redis_server.start()
        await until_served_from_redis(redis_server, cache, origin, [3, 0])

        # And invalidation works again once it is back.
        origin.version = 4
        await cache.invalidate(["toy"])
        assert (await get(cache, origin))[0] == [4, 0]
        await until_served_from_redis(redis_server, cache, origin, [4, 0])


@pytest.mark.parametrize(
    "requests_in_outage",
    [
        pytest.param(3, id="outage"),  # 3 failures or more: the breaker opens
        # One request fails its read and its write: 2 failures, the breaker stays closed.
        pytest.param(1, id="blip"),
    ],
)
async def test_what_the_fallback_learned_in_an_outage_is_never_served_in_a_later_one(
    redis_server: RedisServer, requests_in_outage: int
) -> None:
    origin = Origin()
    async with cache_on(redis_server) as a, cache_on(redis_server) as b:
        # Until a HIT from Redis: a call that timed out under load no longer counts.
        await until_served_from_redis(redis_server, a, origin, [1, 0])

        # Redis away: A answers from the origin and stores the answer in its fallback.
        redis_server.kill()
        for _ in range(requests_in_outage):
            assert (await get(a, origin))[0] == [1, 0]
        assert state(a) is (State.OPEN if requests_in_outage > 1 else State.CLOSED)
        redis_server.start()
        await until_served_from_redis(redis_server, a, origin, [1, 0])

        # Another process changes the data and invalidates, successfully, in Redis. (B's first
        # connection can time out under load, 100 ms: its invalidation then stays pending
        # until B next reaches Redis, which until_connected makes happen.)
        origin.version = 2
        await b.invalidate(["toy"])
        await until_connected(b)
        assert (await get(a, origin))[0] == [2, 0]

        # The next outage: A must not answer with what it learned before the mutation.
        redis_server.kill()
        value, lookup = await get(a, origin)
        assert value == [2, 0], f"stale {value} served as a {lookup.status} from the fallback"


async def test_a_health_probe_that_reconnects_settles_the_missed_invalidation(
    redis_server: RedisServer,
) -> None:
    origin = Origin()
    async with cache_on(redis_server) as a, cache_on(redis_server) as b:
        await get(a, origin)
        assert (await get(b, origin))[1].status == "HIT"

        redis_server.pause()
        try:
            for _ in range(5):
                if state(a) is State.OPEN:
                    break
                assert await a.status() == "disconnected"
            assert state(a) is State.OPEN
            origin.version = 2
            await a.invalidate(["toy"])  # cannot reach Redis: the epoch is pending
        finally:
            redis_server.resume()

        # Only /health runs in A until Redis is back: it reports "connected"...
        deadline = time.monotonic() + RECOVERY_DEADLINE
        seen = [await a.status()]
        while seen[-1] != "connected" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            seen.append(await a.status())
        assert seen[-1] == "connected", seen

        # ...so A trusts Redis again, and B must not be served the pre-mutation entry.
        value, lookup = await get(b, origin)
        assert value == [2, 0], f"B served stale {value} as a {lookup.status}"


# -- end to end: the schema and the app --------------------------------------------------------


async def test_health_reports_redis_connected_disconnected_then_connected_again(
    redis_server: RedisServer, sqlite_db: Database
) -> None:
    async with cache_on(redis_server) as cache:
        app = create_app(Settings(DATABASE_URL=sqlite_db.url), db=sqlite_db, cache=cache)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:

            async def health() -> str:
                response = await http.get("/health")
                assert response.status_code == 200  # Redis is never a reason to fail
                return str(response.json()["redis_cache"])

            assert await health() == "connected"

            redis_server.kill()
            for _ in range(4):
                assert await health() == "disconnected"
            assert state(cache) is State.OPEN

            redis_server.start()
            seen = []
            deadline = time.monotonic() + RECOVERY_DEADLINE
            while time.monotonic() < deadline:
                seen.append(await health())
                if seen[-1] == "connected":
                    break
                await asyncio.sleep(0.05)
            # /health asks Redis whatever the breaker says, and its answer closes the breaker.
            assert seen == ["connected"], seen
            assert state(cache) is State.CLOSED
            assert [await health() for _ in range(3)] == ["connected"] * 3
            assert state(cache) is State.CLOSED


async def test_invalidation_missed_during_an_outage_bumps_the_epoch_before_redis_is_trusted(
    redis_server: RedisServer, sqlite_db: Database
) -> None:
    await add(sqlite_db, threat_input(1))
    async with cache_on(redis_server) as a, cache_on(redis_server) as b:
        assert await total_threats(sqlite_db, a) == (1, "MISS")
        assert await total_threats(sqlite_db, a) == (1, "HIT")
        assert await total_threats(sqlite_db, b) == (1, "HIT")  # the same entry, in Redis

        # Redis is hung for A: A's breaker opens (PINGs only, so no write of A's can land
        # in Redis when it wakes up), then the mutation's invalidation cannot reach it.
        redis_server.pause()
        try:
            for _ in range(5):
                if state(a) is State.OPEN:
                    break
                assert await a.status() == "disconnected"
            assert state(a) is State.OPEN

            result = await schema.execute(
                INGEST,
                variable_values={"threats": [crawled(2)]},
                context_value=gql_context(sqlite_db, a, f"Bearer {CRAWLER}"),
            )
            assert result.errors is None, result.errors
            assert result.data["ingestThreats"] == {"inserted": 1, "updated": 0, "unchanged": 0}
            assert (await total_threats(sqlite_db, a))[0] == 2  # from the fallback or origin
        finally:
            redis_server.resume()

        # A trusts Redis again only after bumping the global epoch there.
        seen: list[str] = []
        deadline = time.monotonic() + RECOVERY_DEADLINE
        while time.monotonic() < deadline and (not seen or state(a) is not State.CLOSED):
            total, status = await total_threats(sqlite_db, a)
            assert total == 2, f"A served a stale total after {seen}"
            seen.append(status)
            await asyncio.sleep(0.05)
        assert state(a) is State.CLOSED, seen

        # A's own entry in Redis was stale: recomputed, by a reader or by the refresh that
        # followed the ingest (then the first read already hits the fresh entry).
        assert "MISS" in seen or a.refresher.refreshed, seen

        # B never saw the invalidation; the epoch made its entry stale too (B now reads the
        # one A stored after the epoch).
        assert (await total_threats(sqlite_db, b))[0] == 2
        assert await total_threats(sqlite_db, b) == (2, "HIT")
        assert await total_threats(sqlite_db, a) == (2, "HIT")


async def test_concurrent_dashboard_load_has_no_errors_while_redis_is_killed(
    redis_server: RedisServer, sqlite_db: Database
) -> None:
    await add(sqlite_db, *(threat_input(n) for n in range(1, 8)))
    expected = (await run(sqlite_db, None, DASHBOARD)).data
    assert expected["stats"]["totalThreats"] == 7

    async with cache_on(redis_server) as cache:

        async def wave(size: int = 50) -> list[str]:
            results = await asyncio.gather(
                *(
                    schema.execute(DASHBOARD, context_value=gql_context(sqlite_db, cache))
                    for _ in range(size)
                )
            )
            assert [r.errors for r in results] == [None] * size
            assert all(r.data == expected for r in results)
            return [record["status"] for r in results for record in r.extensions["cache"]]

        statuses = await wave()  # cold
        assert "MISS" in statuses
        assert set(await wave()) == {"HIT"}  # warm, from Redis

        redis_server.kill()
        await wave()
        await wave()
        assert state(cache) is State.OPEN

        redis_server.start()
        deadline = time.monotonic() + RECOVERY_DEADLINE
        while time.monotonic() < deadline and state(cache) is not State.CLOSED:
            await wave(5)
            await asyncio.sleep(0.05)
        assert state(cache) is State.CLOSED
        await wave()

        # Killed in the middle of a wave this time.
        loop = asyncio.get_running_loop()
        loop.call_later(0.005, redis_server.kill)
        await wave()
        await wave()
        assert redis_server.process is None


async def test_a_restart_that_reloads_a_snapshot_never_serves_what_was_invalidated_before_it(
    redis_server: RedisServer,
) -> None:
    """Redis run with persistence: the snapshot holds an entry and its old generations; an
    invalidation after the snapshot is lost in the crash. The new run_id gives it away."""
    origin = Origin()
    async with cache_on(redis_server) as cache:
        assert (await get(cache, origin))[1].status == "MISS"
        raw = aioredis.Redis.from_url(redis_server.url)
        await raw.save()  # the snapshot: entry + generations as they are now
        await raw.aclose()
        origin.version = 2
        await cache.invalidate(["toy"])  # acknowledged, then lost in the crash
        redis_server.kill()
        redis_server.start()  # reloads dump.rdb from the same directory
        raw = aioredis.Redis.from_url(redis_server.url)
        assert await raw.dbsize() > 0  # the old entry really came back
        await raw.aclose()
        deadline = time.monotonic() + 10
        while True:
            value, lookup = await get(cache, origin)
            assert value == [2, 0], f"stale {value} served ({lookup.status}) after the restart"
            if lookup.status == "HIT" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
