"""The cache layer on its own: the same behaviour on every backend."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest

from cache import Cache, CachePolicy, MemoryBackend, RedisBackend, Scope, daily
from cache.exceptions import PolicyError
from tests.conftest import real_redis_cache

POLICY = CachePolicy(max_age=60, group="things", tags=lambda args: [f"thing={args.get('n')}"])


class Origin:
    """A compute function that counts its calls and can be slowed down or made to fail."""

    def __init__(self, value: Any = (1, 2, 3)) -> None:
        self.value = value
        self.calls = 0
        self.started = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def __call__(self) -> Any:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("origin failed")
        return list(self.value) if isinstance(self.value, tuple) else self.value


def identity(value: Any) -> Any:
    return value


@pytest.fixture(params=["memory", "fakeredis", pytest.param("redis", marks=pytest.mark.redis)])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    if request.param == "memory":
        yield Cache(MemoryBackend(), namespace="t")
    elif request.param == "fakeredis":
        yield Cache(RedisBackend.from_client(fakeredis.FakeAsyncRedis()), namespace="t")
    else:
        async with real_redis_cache() as real:
            yield real


async def lookup(
    cache: Cache, origin: Origin, policy: CachePolicy = POLICY, **args: Any
) -> tuple[Any, str]:
    value, found = await cache.resolve(policy, "Query.things", args, origin, identity)
    return value, found.status


async def test_a_second_read_is_a_hit_and_skips_the_origin(cache: Cache) -> None:
    origin = Origin()
    assert await lookup(cache, origin, n=1) == ([1, 2, 3], "MISS")
    assert await lookup(cache, origin, n=1) == ([1, 2, 3], "HIT")
    assert origin.calls == 1


async def test_different_arguments_are_different_entries(cache: Cache) -> None:
    origin = Origin()
    await lookup(cache, origin, n=1)
    assert (await lookup(cache, origin, n=2))[1] == "MISS"
    assert origin.calls == 2


async def test_none_and_empty_results_are_cached(cache: Cache) -> None:
    for value in (None, []):
        origin = Origin(value)
        assert await lookup(cache, origin, n=repr(value)) == (value, "MISS")
        assert await lookup(cache, origin, n=repr(value)) == (value, "HIT")
        assert origin.calls == 1


async def test_errors_are_never_cached(cache: Cache) -> None:
    origin = Origin()
    origin.fail = True
    with pytest.raises(RuntimeError):
        await lookup(cache, origin, n=1)
    origin.fail = False
    assert await lookup(cache, origin, n=1) == ([1, 2, 3], "MISS")
    assert origin.calls == 2


async def test_invalidating_a_tag_makes_its_entries_stale_and_no_others(cache: Cache) -> None:
    origin = Origin()
    await lookup(cache, origin, n=1)
    await lookup(cache, origin, n=2)
    await cache.invalidate(["thing=1"])
    assert (await lookup(cache, origin, n=1))[1] == "MISS"
    assert (await lookup(cache, origin, n=2))[1] == "HIT"
    assert cache.stats.invalidations["thing=1"] == 1


async def test_clearing_a_group_or_everything_makes_entries_stale(cache: Cache) -> None:
    origin = Origin()
    other = CachePolicy(max_age=60, group="others")
    await lookup(cache, origin, n=1)
    await lookup(cache, origin, other, n=1)
    assert await cache.clear("things") >= 1
    assert (await lookup(cache, origin, n=1))[1] == "MISS"
    assert (await lookup(cache, origin, other, n=1))[1] == "HIT"
    await cache.clear()
    assert (await lookup(cache, origin, other, n=1))[1] == "MISS"


async def test_concurrent_identical_misses_compute_once(cache: Cache) -> None:
    origin = Origin()
    origin.gate = asyncio.Event()
    readers = [asyncio.create_task(lookup(cache, origin, n=7)) for _ in range(200)]
    await origin.started.wait()
    origin.gate.set()
    results = await asyncio.gather(*readers)
    assert origin.calls == 1
    counts = cache.stats.fields["Query.things"]
    assert (counts.misses, counts.coalesced) == (1, 199)
    assert all(value == [1, 2, 3] for value, _ in results)


async def test_a_waiter_that_saw_an_invalidation_does_not_join_an_older_computation(
    cache: Cache,
) -> None:
    old, new = Origin(("old",)), Origin(("new",))
    old.gate = asyncio.Event()
    slow = asyncio.create_task(lookup(cache, old, n=1))
    await old.started.wait()
    await cache.invalidate(["thing=1"])  # a mutation committed and returned
    after = await lookup(cache, new, n=1)  # a read that started after it
    old.gate.set()
    assert after == (["new"], "MISS")
    assert (await slow)[0] == ["old"]  # it started before the mutation: allowed
    # The slow miss stored its pre-mutation result, but under generations nobody matches.
    for _ in range(3):
        assert (await lookup(cache, new, n=1))[0] == ["new"]


async def test_a_private_field_without_a_caller_is_never_cached(cache: Cache) -> None:
    private = CachePolicy(max_age=60, scope=Scope.PRIVATE, group="mine")
    origin = Origin()
    for _ in range(2):
        _, found = await cache.resolve(private, "Query.mine", {}, origin, identity)
        assert found.status == "BYPASS"
    _alice, _ = await cache.resolve(private, "Query.mine", {}, origin, identity, "alice")
    _, hit = await cache.resolve(private, "Query.mine", {}, origin, identity, "alice")
    _, bob = await cache.resolve(private, "Query.mine", {}, origin, identity, "bob")
    assert (hit.status, bob.status) == ("HIT", "MISS")
    assert hit.key is not None
    assert "alice" not in hit.key


async def test_a_daily_answer_is_not_served_after_midnight(cache: Cache) -> None:
    now = [dt.datetime(2026, 3, 14, 23, 59, 59, tzinfo=dt.UTC).timestamp()]
    cache.clock = lambda: now[0]
    trend = CachePolicy(max_age=180, group="charts", boundary=daily)
    origin = Origin()
    assert (await lookup(cache, origin, trend))[1] == "MISS"
    assert (await lookup(cache, origin, trend))[1] == "HIT"
    now[0] += 2  # 00:00:01 the next day
    assert (await lookup(cache, origin, trend))[1] == "MISS"


def test_a_daily_boundary_caps_the_time_to_live() -> None:
    label, left = daily(dt.datetime(2026, 3, 14, 23, 59, 0, tzinfo=dt.UTC).timestamp())
    assert (label, left) == ("2026-03-14", 60.0)


async def test_a_disabled_cache_always_bypasses() -> None:
    cache = Cache(MemoryBackend(), enabled=False)
    origin = Origin()
    for _ in range(2):
        assert (await lookup(cache, origin, n=1))[1] == "BYPASS"
    assert origin.calls == 2


async def test_a_group_time_to_live_can_be_overridden_and_zero_means_never() -> None:
    cache = Cache(MemoryBackend(), max_age={"things": 0})
    origin = Origin()
    for _ in range(2):
        assert (await lookup(cache, origin, n=1))[1] == "BYPASS"


async def test_stats_count_hits_and_misses_per_coordinate(cache: Cache) -> None:
    origin = Origin()
    for _ in range(4):
        await lookup(cache, origin, n=1)
    counts = cache.stats.fields["Query.things"]
    assert (counts.hits, counts.misses, counts.hit_rate) == (3, 1, 0.75)


def test_a_policy_refuses_a_negative_age_or_a_strange_group() -> None:
    with pytest.raises(PolicyError):
        CachePolicy(max_age=-1)
    with pytest.raises(PolicyError):
        CachePolicy(max_age=1, group="a*b")


async def test_a_reader_whose_leader_is_cancelled_computes_instead(cache: Cache) -> None:
    origin = Origin()
    origin.gate = asyncio.Event()
    leader = asyncio.create_task(lookup(cache, origin, n=5))
    await origin.started.wait()
    follower = asyncio.create_task(lookup(cache, origin, n=5))
    await asyncio.sleep(0.01)  # let the follower join the leader's flight
    leader.cancel()  # the leader's client went away
    origin.gate.set()
    assert (await follower)[0] == [1, 2, 3]
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_the_key_count_is_a_scan_made_at_most_every_few_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cache import layer

    redis = fakeredis.FakeAsyncRedis()
    cache = Cache(RedisBackend.from_client(redis), namespace="kc")
    await redis.set("kc:e:1", b"x")
    assert await cache.total_keys() == 1
    await redis.set("kc:e:2", b"x")
    assert await cache.total_keys() == 1  # anyone asking again soon gets the last count
    monkeypatch.setattr(layer, "KEY_COUNT_EVERY", 0.0)
    assert await cache.total_keys() == 2
