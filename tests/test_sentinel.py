"""The cache behind Sentinel, against real servers: a master, a replica and three Sentinels of
the test's own. Values live on the master; after a failover the cache reads and writes the
new master, its listener follows it, and no invalidation is lost. Nothing ever fails."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from cache import BackendError, Cache
from cache.backends import backend_for
from graph.app import create_app
from graph.settings import Settings
from resolvers.store import Database
from tests.conftest import CRAWLER, _unavailable, add, threat_input
from tests.redis_server import RedisServer, SentinelServer
from tests.test_trust import Process as TrustProcess

pytestmark = pytest.mark.redis

SERVICE = "vajra"
FAILOVER = 20.0  # seconds a failover may take, as the cache sees it
QUICK_SYNC = ["--repl-diskless-sync-delay", "0"]  # a replica in sync at once, not in 5 s


@dataclass
class Group:
    master: RedisServer
    replica: RedisServer
    sentinels: list[SentinelServer]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"


async def until(what: str, ready: Callable[[], Awaitable[bool]], deadline: float = 10.0) -> None:
    """Poll `ready` until it is true, failing after `deadline` seconds."""
    stop = time.monotonic() + deadline
    while not await ready():
        assert time.monotonic() < stop, f"not {what} within {deadline} s"
        await asyncio.sleep(0.05)


def client(server: RedisServer) -> aioredis.Redis:
    return aioredis.Redis.from_url(server.url, socket_timeout=2)


async def role(server: RedisServer) -> bytes:
    """The server's role; b"?" when the question itself was cut off (a failover closes the
    connections of a master it demotes)."""
    try:
        async with client(server) as c:
            return bytes((await c.execute_command("ROLE"))[0])
    except RedisConnectionError:
        return b"?"


def directory(path: Path) -> Path:
    path.mkdir()
    return path


@contextlib.asynccontextmanager
async def sentinel_group(path: Path) -> AsyncIterator[Group]:
    """A master, its replica in sync, and three Sentinels that all know the replica, in
    directories under `path`; all stopped afterwards."""
    if shutil.which("redis-server") is None:
        _unavailable("redis-server is not on PATH", "install Redis")
    started: list[RedisServer] = []
    try:
        master = RedisServer(directory(path / "master"), extra=QUICK_SYNC)
        started.append(master)
        master.start()
        replica = RedisServer(
            directory(path / "replica"),
            extra=[*QUICK_SYNC, "--replicaof", "127.0.0.1", str(master.port)],
        )
        started.append(replica)
        replica.start()
        async with client(replica) as r:

            async def synced() -> bool:
                info = await r.info("replication")
                return bool(info.get("master_link_status") == "up")

            await until("the replica in sync", synced)
        sentinels = [
            SentinelServer(directory(path / f"sentinel{i}"), SERVICE, master.port) for i in range(3)
        ]
        started.extend(sentinels)
        for sentinel in sentinels:
            sentinel.start()
        for sentinel in sentinels:
            async with client(sentinel) as s:

                async def knows_the_replica() -> bool:
                    replicas = await s.sentinel_slaves(SERVICE)
                    return any(
                        r["port"] == replica.port and r.get("master-link-status") == "ok"
                        for r in replicas
                    )

                await until("every Sentinel knowing the replica", knows_the_replica)
        yield Group(master, replica, sentinels)
    finally:
        for server in started:
            server.stop()


@pytest.fixture
async def group(tmp_path: Path) -> AsyncIterator[Group]:
    async with sentinel_group(tmp_path) as made:
        yield made


class Process(TrustProcess):
    """A server process in this one (see tests/test_trust.py), on a Sentinel group."""

    async def warm(self, expected: int) -> None:
        """Read until this process answers `expected` from its local tier."""

        async def hit() -> bool:
            return await self.total() == (expected, "HIT")

        await until(f"a local hit of {expected}", hit, FAILOVER)

    async def health(self) -> dict[str, Any]:
        response = await self.http.get("/health")
        assert response.status_code == 200, response.text
        return dict(response.json())


@contextlib.asynccontextmanager
async def process(
    db: Database, url: str, *, namespace: str = "s", operations: bool = True
) -> AsyncIterator[Process]:
    """A server process in this one on `url` (any REDIS_URL form), listening."""
    cache = Cache(
        backend_for(url), namespace=namespace, schema_version="t", epochs=db.epochs, poll=5.0
    )
    settings = Settings(
        DATABASE_URL=db.url, VAJRA_CRAWLER_TOKEN=CRAWLER, CACHE_OPERATIONS=operations
    )
    app = create_app(settings, db=db, cache=cache)
    await cache.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as http:
            listening = cache.trust.listening
            assert listening is not None

            async def live() -> bool:
                return listening()

            await until("listening", live)
            yield Process(cache, http)
    finally:
        await cache.close()


async def entries(server: RedisServer) -> int:
    async with client(server) as c:
        return len([key async for key in c.scan_iter(match="s:*:stats*")])


async def test_values_are_cached_on_the_master(group: Group, sqlite_db: Database) -> None:
    await add(sqlite_db, threat_input(1), threat_input(2))
    async with process(sqlite_db, group.url) as a:
        assert await a.total() == (2, "MISS")
        assert await entries(group.master) > 0
        health = await a.health()
        assert health["redis_cache"] == "connected"
        assert health["redis_topology"] == "sentinel"
        assert health["redis_master"] == f"127.0.0.1:{group.master.port}"


async def test_a_failover_loses_nothing_and_the_cache_follows_the_new_master(
    group: Group, sqlite_db: Database
) -> None:
    await add(sqlite_db, threat_input(1), threat_input(2))
    async with process(sqlite_db, group.url) as a, process(sqlite_db, group.url) as b:
        await a.warm(2)
        new = group.replica
        async with client(group.sentinels[0]) as sentinel:

            async def failover_started() -> bool:
                try:
                    await sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)
                except ResponseError as exc:  # NOGOODSLAVE for a moment after the start
                    if "NOGOODSLAVE" not in str(exc):
                        raise
                    return False
                return True

            await until("a failover begun", failover_started)

        async def failed_over() -> bool:
            # Every call answers, fresh, all along: misses are the only price.
            for p in (a, b):
                assert (await p.total())[0] == 2
            return await role(new) == b"master" and await role(group.master) == b"slave"

        await until("the replica promoted", failed_over, FAILOVER)
        async with client(new) as c:

            async def both_listen_on_the_new_master() -> bool:
                for p in (a, b):
                    assert (await p.total())[0] == 2
                numsub = await c.pubsub_numsub("s:invalidations:{s}")
                return bool(numsub[0][1] == 2)

            await until("both listeners on the new master", both_listen_on_the_new_master)
            await a.warm(2)
            assert (await a.health())["redis_master"] == f"127.0.0.1:{new.port}"
            before = await c.info("commandstats")
            await b.ingest(3)  # an invalidation after the failover, from another process

            async def dropped() -> bool:
                return len(a.cache.local) == 0

            await until("A's local entries dropped", dropped, 2.0)
            assert (await a.total())[0] == 3  # fresh
            await a.warm(3)
            after = await c.info("commandstats")
            # Reads and writes on the new master (SETs replicated to it no longer count).
            for command in ("cmdstat_mget", "cmdstat_set"):
                assert after[command]["calls"] > before[command]["calls"], command
            # The restart guard ran on the new master's connections: they saw its run_id.
            run_id = (await c.info("server"))["run_id"].encode()
            assert await c.get("s:run:{s}") == run_id


async def test_a_master_demoted_behind_the_sentinels_back_is_refused(
    group: Group, tmp_path: Path
) -> None:
    elsewhere = RedisServer(directory(tmp_path / "elsewhere"))
    elsewhere.start()
    backend = backend_for(group.url)
    fresh = backend_for(group.url)
    try:
        await backend.set_many([("k", b"v", 60_000)])
        async with client(group.master) as master:
            await master.execute_command("REPLICAOF", "127.0.0.1", str(elsewhere.port))
        # The Sentinels still name it for a while: a write is refused (READONLY), and a
        # new connection is refused too (ROLE), both as the cache's own error.
        with pytest.raises(BackendError):
            await backend.set_many([("k", b"w", 60_000)])
        with pytest.raises(BackendError, match="is not the master"):
            await fresh.get_many(["k"])
    finally:
        await backend.close()
        await fresh.close()
        elsewhere.stop()


async def test_a_master_the_sentinels_replaced_is_not_read_once_a_write_on_the_new_one_returned(
    group: Group,
) -> None:
    """After SENTINEL FAILOVER the old master stays a master for seconds (10 s measured),
    taking writes that are then lost. A process whose pooled connections still reach it must
    stop reading there before another process's invalidation on the new master returns."""
    old_process = backend_for(group.url)
    try:
        await old_process.set_many([("g", b"1", 60_000)])
        assert await old_process.get_many(["g"]) == [b"1"]  # its connections: the old master
        async with client(group.sentinels[0]) as sentinel:

            async def failover_started() -> bool:
                try:
                    await sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)
                except ResponseError as exc:
                    if "NOGOODSLAVE" not in str(exc):
                        raise
                    return False
                return True

            await until("a failover begun", failover_started)

        async def every_sentinel_names_the_replica() -> bool:
            for s in group.sentinels:
                async with client(s) as c:
                    _, port = await c.sentinel_get_master_addr_by_name(SERVICE)
                if int(port) != group.replica.port:
                    return False
            return True

        await until("every Sentinel naming the replica", every_sentinel_names_the_replica)
        assert await role(group.master) == b"master", "the old master was demoted already"
        new_process = backend_for(group.url)  # started after the failover: the new master
        try:
            await new_process.set_many([("g", b"2", 60_000)], publish=("c", b"g"))
        finally:
            await new_process.close()
        assert await role(group.master) == b"master", "the old master was demoted meanwhile"
        async with client(group.replica) as new, client(group.master) as old:
            assert await new.get("g") == b"2"
            assert await old.get("g") == b"1"
        assert await old_process.get_many(["g"]) == [b"2"]
    finally:
        await old_process.close()
