"""Readers racing a crawler: a read that starts after a mutation returned always sees it."""

from __future__ import annotations

from typing import Any

from bench.workload import NaiveCache, run
from cache import Cache, RedisBackend
from resolvers.seed import seed
from resolvers.store import Database
from tests.conftest import NOW, REDIS_URL, real_redis_cache


class ForgetfulCache(Cache):
    """Never invalidates: the harness must catch it."""

    async def invalidate(self, tags: Any) -> None:
        return None


async def test_no_read_is_stale_under_concurrent_mutations(sqlite_db: Database) -> None:
    await seed(sqlite_db, 300, days=10, now=NOW)
    async with real_redis_cache() as cache:
        outcome = await run(sqlite_db, cache, readers=8, mutations=40)
    assert outcome.errors == 0
    assert outcome.mutations == 40
    assert outcome.reads > 40
    assert outcome.stale == 0
    assert outcome.hits > 0


async def test_the_harness_catches_a_cache_that_serves_stale_answers(sqlite_db: Database) -> None:
    await seed(sqlite_db, 300, days=10, now=NOW)
    async with real_redis_cache() as real:
        forgetful = ForgetfulCache(
            RedisBackend(REDIS_URL), namespace=real.keys.namespace, schema_version="t"
        )
        # Warm first: reads are then fast enough that many start after a mutation returned.
        outcome = await run(
            sqlite_db, forgetful, readers=4, mutations=20, interval=0.02, warmup=0.5
        )
        await forgetful.close()
    assert outcome.stale > 0


async def test_the_naive_design_still_answers_without_errors(sqlite_db: Database) -> None:
    await seed(sqlite_db, 300, days=10, now=NOW)
    async with real_redis_cache() as real:
        naive = NaiveCache(
            RedisBackend(REDIS_URL), namespace=real.keys.namespace, schema_version="t"
        )
        outcome = await run(sqlite_db, naive, readers=4, mutations=10)
        await naive.close()
    assert outcome.errors == 0
    assert outcome.mutations == 10


async def test_no_whole_operation_read_is_stale_under_concurrent_mutations(
    sqlite_db: Database,
) -> None:
    await seed(sqlite_db, 300, days=10, now=NOW)
    async with real_redis_cache() as cache:
        outcome = await run(
            sqlite_db, cache, readers=6, mutations=30, interval=0.05, over_http=True
        )
    assert outcome.errors == 0
    assert outcome.mutations == 30
    assert outcome.stale == 0
    assert outcome.hits > 0
