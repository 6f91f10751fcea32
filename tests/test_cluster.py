"""The cache on Redis Cluster, against real servers: three masters with a replica each, of the
test's own. Entries spread over the masters; generations, the restart marker and the
invalidation channel live in one slot; a warm read is one round trip per node touched and an
invalidation one pipeline to one node. A master killed, or the generations' slot moved to
another master, loses no invalidation and fails no request. (The same under load, over real
server processes: tests/test_topology_faults.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import asyncio as aioredis
from redis.asyncio.cluster import ClusterNode

from cache import BackendError
from cache.backends import ClusterBackend, backend_for
from resolvers.store import Database
from tests.conftest import _unavailable, add, threat_input
from tests.redis_server import RedisCluster, RedisServer
from tests.test_sentinel import FAILOVER, Process, until
from tests.test_sentinel import process as sentinel_process

pytestmark = pytest.mark.redis

NAMESPACE = "c"
SHARD = "{" + NAMESPACE + "}"
DASHBOARD = """{
  stats { totalThreats critical high last24h }
  threats(limit: 5) { total items { id title } }
  severityBreakdown { severity count }
  sourceBreakdown { source count }
  trend(days: 7) { date count }
}"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    if shutil.which("redis-server") is None:
        _unavailable("redis-server is not on PATH", "install Redis")
    servers = RedisCluster(tmp_path)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@contextlib.asynccontextmanager
async def process(db: Database, url: str, *, operations: bool = True) -> AsyncIterator[Process]:
    async with sentinel_process(db, url, namespace=NAMESPACE, operations=operations) as p:
        yield p


def client(server: RedisServer) -> aioredis.Redis:
    return aioredis.Redis.from_url(server.url, socket_timeout=2)


async def keys_on(server: RedisServer, pattern: str) -> list[bytes]:
    async with client(server) as c:
        return [key async for key in c.scan_iter(match=pattern, count=1000)]


async def dashboard(p: Process) -> dict[str, Any]:
    response = await p.http.post("/graphql", json={"query": DASHBOARD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return dict(body["data"])


async def test_entries_spread_and_what_must_agree_lives_in_one_slot(
    cluster: RedisCluster, sqlite_db: Database
) -> None:
    await add(sqlite_db, *(threat_input(i) for i in range(1, 6)))
    async with process(sqlite_db, cluster.url) as a:
        assert await a.total() == (5, "MISS")
        for _ in range(2):
            await dashboard(a)
        await a.warm(5)
        health = await a.health()
        assert health["redis_cache"] == "connected"
        assert (health["redis_topology"], health["redis_nodes"]) == ("cluster", 3)
        home = cluster.master_of(SHARD)
        masters = cluster.masters()
        generations = {m.port: await keys_on(m, f"{NAMESPACE}:g:*") for m in masters}
        entries = {m.port: await keys_on(m, f"{NAMESPACE}:e:*") for m in masters}
        assert generations[home.port], "no generation on the master of the shared slot"
        assert not any(keys for port, keys in generations.items() if port != home.port)
        assert await keys_on(home, f"{NAMESPACE}:run:*") == [f"{NAMESPACE}:run:{SHARD}".encode()]
        assert sum(bool(keys) for keys in entries.values()) >= 2, entries


class NodeCalls:
    """Every round trip the cluster client makes, by node: one pipeline or one command."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, str]] = []
        pipeline, command = ClusterNode.execute_pipeline, ClusterNode.execute_command

        async def execute_pipeline(node: ClusterNode, commands: list[Any]) -> bool:
            names = sorted({str(c.args[0]) for c in commands})
            self.calls.append((node.name, "pipeline " + ",".join(names)))
            return await pipeline(node, commands)

        async def execute_command(node: ClusterNode, *args: Any, **kwargs: Any) -> Any:
            self.calls.append((node.name, str(args[0])))
            return await command(node, *args, **kwargs)

        monkeypatch.setattr(ClusterNode, "execute_pipeline", execute_pipeline)
        monkeypatch.setattr(ClusterNode, "execute_command", execute_command)

    @contextlib.contextmanager
    def during(self) -> Iterator[list[tuple[str, str]]]:
        seen: list[tuple[str, str]] = []
        start = len(self.calls)
        try:
            yield seen
        finally:
            seen.extend(self.calls[start:])


async def test_a_warm_read_is_one_round_trip_per_node_and_an_invalidation_one_pipeline(
    cluster: RedisCluster, sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add(sqlite_db, *(threat_input(i) for i in range(1, 6)))
    spy = NodeCalls(monkeypatch)
    async with process(sqlite_db, cluster.url, operations=False) as a:
        backend = a.cache.backend
        assert isinstance(backend, ClusterBackend)
        for _ in range(3):
            await dashboard(a)
        a.cache.drop_local(["*"])  # the local tier would answer without Redis
        reads: list[list[tuple[str, str]]] = []
        get_many = backend.get_many

        async def counted(keys: Any) -> list[bytes | None]:
            with spy.during() as seen:
                values = await get_many(keys)
            reads.append(seen)
            return values

        monkeypatch.setattr(backend, "get_many", counted)
        with spy.during() as everything:
            await dashboard(a)
        assert reads, "the warm dashboard read nothing from Redis"
        for seen in reads:
            nodes = [name for name, _ in seen]
            assert len(nodes) == len(set(nodes)), f"a node was asked twice in one read: {seen}"
            assert all(kind == "pipeline MGET" for _, kind in seen), seen
        assert sum(len(seen) for seen in reads) == len(everything), everything

        with spy.during() as bump:
            await a.cache.invalidate(["threats", "stats"])
        home = cluster.master_of(SHARD)
        writes = [(name, kind) for name, kind in bump if "SET" in kind]
        assert writes == [(f"127.0.0.1:{home.port}", "pipeline SET,SPUBLISH")], bump


async def shard_listeners(server: RedisServer) -> int:
    """How many processes listen for invalidations on `server` (sharded pub/sub)."""
    async with client(server) as c:
        reply = await c.execute_command(
            "PUBSUB", "SHARDNUMSUB", f"{NAMESPACE}:invalidations:{SHARD}"
        )
    return int(reply[1])


async def test_a_master_killed_loses_no_invalidation_and_the_cache_follows_its_replica(
    cluster: RedisCluster, sqlite_db: Database
) -> None:
    await add(sqlite_db, threat_input(1), threat_input(2))
    async with process(sqlite_db, cluster.url) as a, process(sqlite_db, cluster.url) as b:
        await a.warm(2)
        await b.warm(2)
        home = cluster.master_of(SHARD)
        assert await shard_listeners(home) == 2
        home.kill()
        await b.ingest(3)  # while the generations' master is dead: the epoch covers it
        assert (await a.total())[0] == 3

        def promoted() -> RedisServer | None:
            return cluster.taken_over(SHARD, home)

        async def failed_over() -> bool:
            for p in (a, b):  # every call answers, fresh, all along
                assert (await p.total())[0] == 3
            return promoted() is not None

        await until("a replica promoted", failed_over, FAILOVER)
        new = promoted()
        assert new is not None

        async def both_listen() -> bool:
            for p in (a, b):
                assert (await p.total())[0] == 3
            return await shard_listeners(new) == 2

        await until("both listeners on the new master", both_listen, FAILOVER)
        await a.warm(3)
        await b.ingest(4)  # after the failover, from the other process

        async def dropped() -> bool:
            return len(a.cache.local) == 0

        await until("A's local entries dropped", dropped, 2.0)
        assert (await a.total())[0] == 4
        await a.warm(4)
        # The restart guard ran on the promoted replica's first connection.
        async with client(new) as c:
            run_id = (await c.info("server"))["run_id"].encode()
            assert await c.get(f"{NAMESPACE}:run:{SHARD}") == run_id
        assert (await a.health())["redis_cache"] == "connected"


async def test_the_shared_slot_moved_to_another_master_while_reading(
    cluster: RedisCluster, sqlite_db: Database
) -> None:
    await add(sqlite_db, threat_input(1), threat_input(2))
    async with process(sqlite_db, cluster.url) as a, process(sqlite_db, cluster.url) as b:
        await a.warm(2)
        home = cluster.master_of(SHARD)
        target = next(m for m in cluster.masters() if m is not home)
        reading = True

        async def read_all_along() -> None:
            while reading:
                for p in (a, b):
                    assert (await p.total())[0] >= 2
                await asyncio.sleep(0.01)

        reader = asyncio.create_task(read_all_along())
        try:
            moved = await asyncio.to_thread(cluster.move_slot, cluster.keyslot(SHARD), home, target)
            assert moved >= 2, "the generations and the marker should have moved"
            assert cluster.master_of(SHARD) is target

            async def both_listen() -> bool:
                return await shard_listeners(target) == 2

            await until("both listeners on the slot's new master", both_listen, FAILOVER)
            await b.ingest(3)
            assert (await a.total())[0] == 3
            await a.warm(3)
            await a.ingest(4)
            assert (await b.total())[0] == 4
        finally:
            reading = False
            await reader


async def test_clear_and_the_key_count_reach_every_master(
    cluster: RedisCluster, sqlite_db: Database
) -> None:
    await add(sqlite_db, *(threat_input(i) for i in range(1, 6)))
    async with process(sqlite_db, cluster.url, operations=False) as a:
        for _ in range(2):
            await dashboard(a)
        masters = cluster.masters()
        before = [len(await keys_on(m, f"{NAMESPACE}:e:*")) for m in masters]
        assert sum(bool(n) for n in before) >= 2, before
        assert await a.cache.total_keys() >= sum(before)
        assert await a.cache.clear() == sum(before)
        assert [len(await keys_on(m, f"{NAMESPACE}:e:*")) for m in masters] == [0, 0, 0]
        assert (await dashboard(a))["stats"]["totalThreats"] == 5


async def test_after_a_failover_reads_find_the_new_master_by_themselves(
    cluster: RedisCluster,
) -> None:
    """Only pipelines (MGET, writes) reach the cluster: redis-py refreshes its slot table
    after a single command's connection error, not after a pipeline's, so the backend asks
    for the refresh itself."""
    backend = backend_for(cluster.url)
    assert isinstance(backend, ClusterBackend)
    try:
        await backend.set_many([(SHARD, b"v", 60_000)])
        assert await backend.get_many([SHARD]) == [b"v"]
        home = cluster.master_of(SHARD)
        home.kill()

        def promoted() -> bool:
            return cluster.taken_over(SHARD, home) is not None

        deadline = asyncio.get_running_loop().time() + FAILOVER
        while not await asyncio.to_thread(promoted):
            assert asyncio.get_running_loop().time() < deadline, "no replica promoted"
            await asyncio.sleep(0.1)
        outcomes = []
        for _ in range(3):
            try:
                outcomes.append(await backend.get_many([SHARD]))
            except BackendError as exc:
                outcomes.append(str(exc))
        # A pooled connection to the dead master may fail once; then the new master answers.
        assert outcomes[-1] == [b"v"], outcomes
    finally:
        await backend.close()


async def test_a_read_of_a_slot_being_migrated_follows_the_redirection(
    cluster: RedisCluster,
) -> None:
    backend = backend_for(cluster.url)
    assert isinstance(backend, ClusterBackend)
    try:
        await backend.set_many([("{m}a", b"1", 60_000), ("{m}b", b"2", 60_000)])
        assert await backend.get_many(["{m}a", "{m}b"]) == [b"1", b"2"]
        slot, home = cluster.keyslot("{m}a"), cluster.master_of("{m}a")
        target = next(m for m in cluster.masters() if m is not home)
        source_id, target_id = cluster.node_id(home), cluster.node_id(target)
        cluster.cli(target.port, "cluster", "setslot", str(slot), "importing", source_id)
        cluster.cli(home.port, "cluster", "setslot", str(slot), "migrating", target_id)
        cluster.cli(home.port, "migrate", "127.0.0.1", str(target.port), "", "0", "5000",
                    "keys", "{m}a")  # fmt: skip
        # Half moved: the source answers ASK for "{m}a" (and for the pair, TRYAGAIN).
        assert await backend.get_many(["{m}a"]) == [b"1"]
        assert await backend.get_many(["{m}b"]) == [b"2"]
        await asyncio.to_thread(cluster.move_slot, slot, home, target)
        assert await backend.get_many(["{m}a", "{m}b"]) == [b"1", b"2"]  # MOVED, then there
    finally:
        await backend.close()
