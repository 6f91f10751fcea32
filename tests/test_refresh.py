"""Refresh on write against a real Redis: after a write the hot entries it made stale are
recomputed in the background, once, under the new generations, so readers hit fresh data."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis import asyncio as aioredis

from cache import Cache, CachePolicy, PolicyError, RedisBackend, Scope
from cache.operation import OperationCache
from graph.app import create_app
from graph.settings import Settings
from resolvers.store import Database
from tests.conftest import CRAWLER, REDIS_URL, add, real_redis_cache, threat_input
from tests.test_cache_layer import Origin, identity
from tests.test_cache_schema import run
from tests.test_ingest import INGEST, crawled

pytestmark = pytest.mark.redis

POLICY = CachePolicy(max_age=60, group="things", tags=lambda args: ["things"], refresh=True)


async def read(cache: Cache, origin: Origin, policy: CachePolicy = POLICY) -> tuple[Any, str]:
    value, found = await cache.resolve(policy, "Query.things", {"n": 1}, origin, identity)
    return value, found.status


@pytest.fixture
async def cache() -> AsyncIterator[Cache]:
    async with real_redis_cache(refresh_every=0.0) as own:
        yield own


async def test_a_read_after_a_write_hits_the_refreshed_fresh_entry(cache: Cache) -> None:
    origin = Origin([1])
    assert await read(cache, origin) == ([1], "MISS")
    origin.value = [2]  # the write commits
    await cache.invalidate(["things"])
    await cache.refresher.idle()
    assert origin.calls == 2
    assert await read(cache, origin) == ([2], "HIT")
    assert origin.calls == 2  # the reader cost the origin nothing


async def test_a_field_without_refresh_is_left_a_miss(cache: Cache) -> None:
    origin = Origin([1])
    plain = CachePolicy(max_age=60, group="things", tags=lambda args: ["things"])
    await read(cache, origin, plain)
    await cache.invalidate(["things"])
    await cache.refresher.idle()
    assert origin.calls == 1
    assert (await read(cache, origin, plain))[1] == "MISS"


async def test_an_entry_nobody_read_since_its_refresh_is_not_refreshed_again(
    cache: Cache,
) -> None:
    origin = Origin([1])
    await read(cache, origin)
    for _ in range(3):
        await cache.invalidate(["things"])
        await cache.refresher.idle()
    assert origin.calls == 2


async def test_rapid_writes_coalesce_into_few_refreshes() -> None:
    async with real_redis_cache(refresh_every=0.2) as cache:
        origin = Origin([1])
        await read(cache, origin)
        for n in range(20):
            await read(cache, origin)  # still read between writes: still hot
            origin.value = [n]
            await cache.invalidate(["things"])
            await asyncio.sleep(0.01)
        await cache.refresher.idle()
        # 20 writes in ~0.2 s: a round at once, then at most one per `every`, not 20.
        assert cache.refresher.refreshed <= 3
        assert cache.refresher.rounds <= 3
        assert await read(cache, origin) == ([19], "HIT")


async def test_a_reader_during_a_refresh_waits_for_it_and_computes_nothing(
    cache: Cache,
) -> None:
    origin = Origin([1])
    await read(cache, origin)
    origin.value = [2]
    origin.gate = asyncio.Event()
    origin.started.clear()
    await cache.invalidate(["things"])  # returns before the refresh is done
    await origin.started.wait()
    reader = asyncio.create_task(read(cache, origin))
    await asyncio.sleep(0.05)
    assert not reader.done()
    origin.gate.set()
    assert await reader == ([2], "COALESCED")
    assert origin.calls == 2


async def test_a_failing_refresh_leaves_a_miss_and_no_error(cache: Cache) -> None:
    origin = Origin([1])
    await read(cache, origin)
    origin.fail = True
    await cache.invalidate(["things"])
    await cache.refresher.idle()
    assert cache.refresher.failed == 1
    origin.fail = False
    origin.value = [2]
    assert await read(cache, origin) == ([2], "MISS")


async def test_a_refresh_with_redis_down_computes_nothing_and_fails_nothing() -> None:
    backend = RedisBackend("redis://127.0.0.1:1")  # nothing listens there
    cache = Cache(backend, namespace="down", refresh_every=0.0)
    try:
        origin = Origin([1])
        await read(cache, origin)  # a bypass, not tracked as a stored entry, but seen
        await cache.invalidate(["things"])
        await cache.refresher.idle()
        assert cache.refresher.failed == 0
        assert origin.calls == 1
    finally:
        await cache.close()


def test_a_private_field_cannot_be_refreshed() -> None:
    with pytest.raises(PolicyError):
        CachePolicy(max_age=60, scope=Scope.PRIVATE, refresh=True)


async def test_the_hot_set_is_bounded_and_keeps_the_most_read() -> None:
    async with real_redis_cache(refresh_entries=2, refresh_every=0.0) as cache:
        origins = [Origin([n]) for n in range(3)]
        for n, origin in enumerate(origins):
            for _ in range(3 - n):  # entry 0 read 3 times, 1 twice, 2 once
                await cache.resolve(POLICY, "Query.things", {"n": n}, origin, identity)
        await cache.invalidate(["things"])
        await cache.refresher.idle()
        assert [o.calls for o in origins] == [2, 1, 2]  # 1 was dropped for 2, the newest


@contextlib.asynccontextmanager
async def two_processes() -> AsyncIterator[tuple[Cache, Cache]]:
    namespace = "test-" + secrets.token_hex(4)
    caches = [
        Cache(RedisBackend(REDIS_URL), namespace=namespace, schema_version="t", refresh_every=0)
        for _ in range(2)
    ]
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        for cache in caches:
            await cache.start()
        async with asyncio.timeout(5):  # reads trust Redis once subscribed
            for cache in caches:
                while not cache.trust.listening or not cache.trust.listening():
                    await asyncio.sleep(0.01)
        yield caches[0], caches[1]
    finally:
        for cache in caches:
            await cache.close()
        async for key in client.scan_iter(match=f"{namespace}:*", count=1000):
            await client.unlink(key)
        await client.aclose()


async def test_only_the_writing_process_recomputes_and_the_other_hits() -> None:
    async with two_processes() as (writer, other):
        mine, theirs = Origin([1]), Origin([1])
        await read(writer, mine)
        assert (await read(other, theirs))[1] == "HIT"
        mine.value = theirs.value = [2]
        await writer.invalidate(["things"])
        await writer.refresher.idle()
        await other.refresher.idle()
        assert await read(other, theirs) == ([2], "HIT")
        assert (mine.calls, theirs.calls) == (2, 0)


async def test_a_reader_in_another_process_waits_for_the_refresh_lease() -> None:
    async with two_processes() as (writer, other):
        mine, theirs = Origin([1]), Origin([1])
        await read(writer, mine)
        mine.value = theirs.value = [2]
        mine.gate = asyncio.Event()
        mine.started.clear()
        await writer.invalidate(["things"])
        await mine.started.wait()
        reader = asyncio.create_task(read(other, theirs))
        await asyncio.sleep(0.05)
        mine.gate.set()
        assert (await reader)[0] == [2]
        assert (mine.calls, theirs.calls) == (2, 0)


DASHBOARD = """{
  stats { totalThreats high }
  threats(limit: 5) { total items { id } }
  trend(days: 5) { date count }
  severityBreakdown { severity count }
  sourceBreakdown(limit: 5) { source count }
}"""


async def test_after_an_ingest_the_dashboard_is_fresh_and_costs_no_query(
    sqlite_db: Database, cache: Cache
) -> None:
    await add(sqlite_db, *(threat_input(n) for n in range(1, 4)))
    before = await run(sqlite_db, cache, DASHBOARD)
    assert before.data["stats"]["totalThreats"] == 3
    await run(sqlite_db, cache, INGEST, {"threats": [crawled(9)]}, token=CRAWLER)
    await cache.refresher.idle()
    queries = sqlite_db.queries
    after = await run(sqlite_db, cache, DASHBOARD)
    assert {r["status"] for r in after.extensions["cache"]} == {"HIT"}
    assert sqlite_db.queries == queries
    assert after.data["stats"]["totalThreats"] == 4
    assert after.data["threats"]["total"] == 4


# -- whole operations ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def served(db: Database, cache: Cache) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app on `cache`, and its whole-operation cache (the middleware, found inside)."""
    app = create_app(Settings(DATABASE_URL=db.url, VAJRA_CRAWLER_TOKEN=CRAWLER), db=db, cache=cache)
    layer: Any = app
    while not isinstance(layer, OperationCache):
        layer = layer.app
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        yield http, layer


async def dashboard(http: httpx.AsyncClient) -> tuple[int, str]:
    response = await http.post("/graphql", json={"query": DASHBOARD})
    return response.json()["data"]["stats"]["totalThreats"], response.headers["x-cache"]


async def ingest(http: httpx.AsyncClient, n: int) -> None:
    response = await http.post(
        "/graphql",
        json={"query": INGEST, "variables": {"threats": [crawled(n)]}},
        headers={"Authorization": f"Bearer {CRAWLER}"},
    )
    assert response.json()["data"]["ingestThreats"]["inserted"] == 1


async def test_a_hot_operation_is_replayed_after_a_write_and_the_next_reader_hits(
    sqlite_db: Database, cache: Cache
) -> None:
    await add(sqlite_db, *(threat_input(n) for n in range(1, 4)))
    async with served(sqlite_db, cache) as (http, _):
        assert await dashboard(http) == (3, "MISS")
        assert await dashboard(http) == (3, "HIT")
        await ingest(http, 9)
        await cache.refresher.idle()
        queries = sqlite_db.queries
        assert await dashboard(http) == (4, "HIT")
        assert sqlite_db.queries == queries  # the reader cost the database nothing
        assert cache.stats.refresh["operations"] == 1


async def test_a_reader_arriving_during_a_replay_waits_for_it_instead_of_running_again(
    sqlite_db: Database, cache: Cache
) -> None:
    await add(sqlite_db, *(threat_input(n) for n in range(1, 4)))
    async with served(sqlite_db, cache) as (http, layer):
        await dashboard(http)
        replay, gate = layer._replay, asyncio.Event()

        async def slow(*args: Any) -> None:
            await gate.wait()
            await replay(*args)

        layer._replay = slow
        await ingest(http, 9)
        async with asyncio.timeout(5):
            while not layer.replays._flights:
                await asyncio.sleep(0.01)
        reader = asyncio.create_task(dashboard(http))
        await asyncio.sleep(0.05)
        assert not reader.done()  # waiting for the replay, not computing
        queries = sqlite_db.queries
        gate.set()
        assert await reader == (4, "COALESCED")
        await cache.refresher.idle()
        replayed = sqlite_db.queries - queries
        assert await dashboard(http) == (4, "HIT")
        assert sqlite_db.queries - queries == replayed  # one computation, the replay's


async def test_an_operation_nobody_read_since_its_replay_is_not_replayed_again(
    sqlite_db: Database, cache: Cache
) -> None:
    await add(sqlite_db, threat_input(1))
    async with served(sqlite_db, cache) as (http, _):
        await dashboard(http)
        for n in range(3):
            await ingest(http, 10 + n)
            await cache.refresher.idle()
        assert cache.stats.refresh["operations"] == 1


async def test_a_replay_asks_for_the_negotiated_media_type_not_the_accept_header_as_sent(
    sqlite_db: Database, cache: Cache
) -> None:
    await add(sqlite_db, threat_input(1))
    accept = "application/graphql-response+json;x=" + "a" * 50_000
    async with served(sqlite_db, cache) as (http, layer):

        async def read() -> httpx.Response:
            return await http.post(
                "/graphql", json={"query": DASHBOARD}, headers={"accept": accept}
            )

        assert (await read()).headers["x-cache"] == "MISS"
        (hot,) = layer.replays._hot.values()
        assert sum(len(k) + len(v) for k, v in hot.scope["headers"]) < 512
        await ingest(http, 9)
        await cache.refresher.idle()
        assert cache.stats.refresh["operations"] == 1
        again = await read()
        assert again.headers["x-cache"] == "HIT"  # the replay stored this variant's answer
        assert again.headers["content-type"] == "application/graphql-response+json"
        assert again.json()["data"]["stats"]["totalThreats"] == 2
