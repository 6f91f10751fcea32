"""Stale while revalidate, on expiry only, against a real Redis: an entry past its max age
whose generations are all current is served while one flight recomputes it; never one a
write invalidated, never past its window or its boundary."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cache import Cache, CachePolicy, PolicyError, Scope, daily
from cache.extension import OperationRecord
from resolvers.store import Database
from tests.conftest import add, real_redis_cache, threat_input
from tests.test_cache_layer import Origin, identity
from tests.test_refresh import dashboard, ingest, served

pytestmark = pytest.mark.redis

POLICY = CachePolicy(max_age=60, group="things", tags=lambda args: ["things"], swr=30)
MIDDAY = dt.datetime(2026, 3, 14, 12, tzinfo=dt.UTC).timestamp()


class Clock:
    def __init__(self, now: float = MIDDAY) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def cache(clock: Clock) -> AsyncIterator[Cache]:
    async with real_redis_cache(clock=clock) as own:
        yield own


async def read(cache: Cache, origin: Origin, policy: CachePolicy = POLICY) -> tuple[Any, str]:
    value, found = await cache.resolve(policy, "Query.things", {}, origin, identity)
    return value, found.status


async def settled(cache: Cache) -> None:
    """Revalidations done, and their flights no longer shared: real time passes slower than
    these tests' clock, and a flight just finished would be joined (FLIGHT_MEMORY)."""
    await cache.revalidator.idle()
    async with asyncio.timeout(5):
        while cache.flights._flights:
            await asyncio.sleep(0.02)


async def expire(cache: Cache, clock: Clock, seconds: float) -> None:
    await settled(cache)
    clock.now += seconds


async def test_an_expired_entry_is_served_while_one_flight_recomputes_it(
    cache: Cache, clock: Clock
) -> None:
    origin = Origin([1])
    await read(cache, origin)
    origin.value = [2]  # changed without a write the cache heard of: only time tells
    await expire(cache, clock, 61)
    origin.gate = asyncio.Event()
    answers = await asyncio.gather(*(read(cache, origin) for _ in range(5)))
    assert answers == [([1], "STALE")] * 5  # nobody waited
    origin.gate.set()
    await settled(cache)
    assert origin.calls == 2  # one revalidation for five stale readers
    assert await read(cache, origin) == ([2], "HIT")


async def test_an_entry_a_write_invalidated_is_never_served_stale(
    cache: Cache, clock: Clock
) -> None:
    origin = Origin([1])
    await read(cache, origin)
    origin.value = [2]
    await cache.invalidate(["things"])
    await expire(cache, clock, 61)
    assert await read(cache, origin) == ([2], "MISS")
    clock.now += 1
    assert await read(cache, origin) == ([2], "HIT")


async def test_past_its_window_an_entry_is_a_miss(cache: Cache, clock: Clock) -> None:
    origin = Origin([1])
    await read(cache, origin)
    origin.value = [2]
    await expire(cache, clock, 60 + 30)
    assert await read(cache, origin) == ([2], "MISS")


async def test_a_fresh_entry_is_a_plain_hit(cache: Cache, clock: Clock) -> None:
    origin = Origin([1])
    await read(cache, origin)
    clock.now += 59
    assert await read(cache, origin) == ([1], "HIT")
    assert not cache.revalidator.tasks


async def test_a_failing_revalidation_keeps_serving_stale_and_fails_nothing(
    cache: Cache, clock: Clock
) -> None:
    origin = Origin([1])
    await read(cache, origin)
    origin.fail = True
    await expire(cache, clock, 61)
    assert await read(cache, origin) == ([1], "STALE")
    await settled(cache)
    origin.fail = False
    origin.value = [2]
    clock.now += 1
    assert await read(cache, origin) == ([1], "STALE")
    await settled(cache)
    assert await read(cache, origin) == ([2], "HIT")


async def test_a_stale_answer_never_crosses_its_boundary(cache: Cache, clock: Clock) -> None:
    policy = CachePolicy(max_age=60, group="things", boundary=daily, swr=600)
    origin = Origin([1])
    clock.now = MIDDAY + 12 * 3600 - 100  # 100 s before midnight
    await read(cache, origin, policy)
    origin.value = [2]
    await expire(cache, clock, 90)  # expired, inside the window, still today
    assert await read(cache, origin, policy) == ([1], "STALE")
    await settled(cache)
    origin.value = [3]
    clock.now += 200  # tomorrow: within the window of the entry just stored, a new period
    assert await read(cache, origin, policy) == ([3], "MISS")


async def test_a_stale_answer_is_never_built_upon(cache: Cache, clock: Clock) -> None:
    origin = Origin([1])
    await read(cache, origin)
    await expire(cache, clock, 61)
    _, found = await cache.resolve(POLICY, "Query.things", {}, origin, identity)
    assert found.status == "STALE"
    record = OperationRecord()
    record.add(found, Scope.PUBLIC, POLICY.swr)
    assert not record.cacheable  # no whole-operation entry, and the response is no-store
    await settled(cache)


def test_swr_is_not_for_private_fields_nor_negative() -> None:
    with pytest.raises(PolicyError):
        CachePolicy(max_age=60, scope=Scope.PRIVATE, swr=10)
    with pytest.raises(PolicyError):
        CachePolicy(max_age=60, swr=-1)


async def test_an_expired_whole_operation_is_served_while_one_replay_recomputes_it(
    sqlite_db: Database, clock: Clock
) -> None:
    async with real_redis_cache(clock=clock, refresh_every=0.0) as cache:
        await add(sqlite_db, *(threat_input(n) for n in range(1, 4)))
        await cache.start()  # listening: the local tier is trusted
        async with asyncio.timeout(5):
            while not cache.trust.trusted():
                await asyncio.sleep(0.01)
        async with served(sqlite_db, cache) as (http, layer):
            assert await dashboard(http) == (3, "MISS")
            assert await dashboard(http) == (3, "HIT")
            # Past the operation's max age (stats: 60 s), inside its window (30 s more).
            await expire(cache, clock, 70)
            queries = sqlite_db.queries
            assert await dashboard(http) == (3, "STALE")  # answered at once, not computed
            assert sqlite_db.queries == queries
            seen = []
            for _ in range(5):  # the replay may find a stale field first: then once more
                await settled(cache)
                async with asyncio.timeout(5):
                    while layer.replays._background:
                        await asyncio.sleep(0.01)
                seen.append(await dashboard(http))
                if seen[-1][1] == "HIT":
                    break
            assert seen[-1] == (3, "HIT")
            assert {status for _, status in seen} <= {"STALE", "HIT"}  # nobody waited
            # A write is never answered stale: the entry is gone, not expired.
            await ingest(http, 9)
            total, status = await dashboard(http)
            assert (total, status != "STALE") == (4, True)
