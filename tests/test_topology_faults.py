"""The consistency harness (tests/consistency.py) on Redis Cluster and on Sentinel: two
`vajra serve` processes, readers and a crawler over HTTP, through a master killed (its replica
promoted), `SENTINEL FAILOVER`, and slots migrated while reading. Each cell: 0 stale reads
after a mutation returns, 0 errors, the hit rate back above 90% within 30 s.

Run: `PYTHONPATH=. .venv/bin/python -m pytest tests/test_topology_faults.py -s` (-s prints each
cell's counts). About 3 minutes on 2 cores; each cell is bounded to 60 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from tests.conftest import _unavailable
from tests.consistency import Fault, check_covered, run_cell, seeded, server_env
from tests.load import Load, health
from tests.redis_server import RedisCluster, RedisServer, SentinelServer
from tests.servers import Server, start_all
from tests.test_sentinel import SERVICE, sentinel_group

pytestmark = pytest.mark.redis

FAILOVER_WITHIN = 20.0


def client(server: RedisServer) -> aioredis.Redis:
    return aioredis.Redis.from_url(server.url, socket_timeout=2)


async def keys_of(namespace: str, servers: list[RedisServer]) -> int:
    found = 0
    for server in servers:
        async with client(server) as c:
            found += len([k async for k in c.scan_iter(match=f"{namespace}:*", count=1000)])
    return found


async def until(what: str, ready: Callable[[], bool], deadline: float = FAILOVER_WITHIN) -> float:
    """Poll `ready` (in a thread: it may run redis-cli) until true; when it became true."""
    stop = time.monotonic() + deadline
    while not await asyncio.to_thread(ready):
        assert time.monotonic() < stop, f"not {what} within {deadline} s"
        await asyncio.sleep(0.1)
    return time.monotonic()


@contextlib.asynccontextmanager
async def servers_on(
    redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[list[Server], Path, str]]:
    path = tmp_path / "vajra.db"
    url = f"sqlite+aiosqlite:///{path}"
    await seeded(url, 500)
    namespace = "t" + secrets.token_hex(4)
    env = server_env(url, redis_url, namespace)
    servers = [Server("A", env, tmp_path), Server("B", env, tmp_path)]
    try:
        await start_all(servers)
        yield servers, path, namespace
    finally:
        for server in servers:
            server.kill()


# -- Cluster: three masters, a replica each ------------------------------------------------------


@dataclass
class ClusterWorld:
    cluster: RedisCluster
    servers: list[Server]
    db_path: Path
    namespace: str

    @property
    def shard(self) -> str:
        """A key in the slot of the namespace's generations and invalidation channel."""
        return "{" + self.namespace + "}"

    async def stored(self) -> int:
        return await keys_of(self.namespace, self.cluster.masters())


@pytest.fixture
async def cluster_world(tmp_path: Path) -> AsyncIterator[ClusterWorld]:
    if shutil.which("redis-server") is None:
        _unavailable("redis-server is not on PATH", "install Redis")
    (tmp_path / "redis").mkdir()
    cluster = RedisCluster(tmp_path / "redis")
    try:
        await asyncio.to_thread(cluster.start)
        async with servers_on(cluster.url, tmp_path) as (servers, path, namespace):
            yield ClusterWorld(cluster, servers, path, namespace)
    finally:
        cluster.stop()


async def kill_the_generations_master(world: ClusterWorld, load: Load) -> Fault:
    """SIGKILL the master that holds the generations, the epoch and the channel; the crawler
    ingests all through the failover."""
    load.interval = 0.25
    home = world.cluster.master_of(world.shard)
    fault = Fault(time.monotonic())
    home.kill()
    # One ingest for certain while the master is dead (the crawler's may be mid-wait).
    during = asyncio.create_task(load.ingest(world.servers[0]))

    def promoted() -> bool:
        return world.cluster.taken_over(world.shard, home) is not None

    await until("a replica promoted", promoted)
    await asyncio.to_thread(world.cluster.wait_ok)
    fault.healthy = time.monotonic()
    new = world.cluster.master_of(world.shard)
    fault.evidence.append(
        f"master :{home.port} killed, replica :{new.port} promoted {load.at(fault.healthy)}"
    )
    await during
    check_covered(fault, load, fault.began, fault.healthy, "during the failover", started=True)
    return fault


async def migrate_slots_while_reading(world: ClusterWorld, load: Load) -> Fault:
    """`redis-cli --cluster reshard` of 100 slots from the generations' master to another,
    then the generations' slot itself, with readers and the crawler running."""
    load.interval = 0.25
    cluster = world.cluster
    home = cluster.master_of(world.shard)
    target = next(m for m in cluster.masters() if m is not home)
    fault = Fault(time.monotonic())
    await asyncio.to_thread(cluster.reshard, home, target, 100)
    # The crawler's 250 ms may not fall inside a quick migration: one ingest for certain,
    # between the 100 slots and the generations' own.
    await load.ingest(world.servers[0])
    moved = await asyncio.to_thread(cluster.move_slot, cluster.keyslot(world.shard), home, target)
    fault.healthy = time.monotonic()
    if cluster.master_of(world.shard) is target:
        fault.evidence.append(
            f"100 slots and the generations' slot ({moved} keys) moved :{home.port} -> "
            f":{target.port} by {load.at(fault.healthy)}"
        )
    else:
        fault.missing.append("the generations' slot did not move")
    check_covered(fault, load, fault.began, fault.healthy, "during the migration")
    return fault


ClusterFault = Callable[[ClusterWorld, Load], Awaitable[Fault]]


@pytest.mark.parametrize(
    "fault_run",
    [
        pytest.param(kill_the_generations_master, id="cluster-master-killed"),
        pytest.param(migrate_slots_while_reading, id="cluster-reshard"),
    ],
)
async def test_cluster_no_stale_read_no_error_and_the_cache_comes_back(
    cluster_world: ClusterWorld, fault_run: ClusterFault
) -> None:
    await run_cell(cluster_world, fault_run)


# -- Sentinel: a master, its replica, three Sentinels ---------------------------------------------


@dataclass
class SentinelWorld:
    master: RedisServer
    replica: RedisServer
    sentinels: list[SentinelServer]
    servers: list[Server]
    db_path: Path
    namespace: str

    async def current_master(self) -> RedisServer:
        async with client(self.sentinels[0]) as s:
            _, port = await s.sentinel_get_master_addr_by_name(SERVICE)
        return self.master if int(port) == self.master.port else self.replica

    async def stored(self) -> int:
        return await keys_of(self.namespace, [await self.current_master()])


@pytest.fixture
async def sentinel_world(tmp_path: Path) -> AsyncIterator[SentinelWorld]:
    (tmp_path / "redis").mkdir()
    async with (
        sentinel_group(tmp_path / "redis") as group,
        servers_on(group.url, tmp_path) as (servers, path, namespace),
    ):
        yield SentinelWorld(group.master, group.replica, group.sentinels, servers, path, namespace)


async def promoted(world: SentinelWorld, load: Load, fault: Fault, how: str) -> Fault:
    # One ingest for certain during the failover (the crawler's may be mid-wait).
    during = asyncio.create_task(load.ingest(world.servers[0]))

    async def replica_is_master() -> bool:
        with contextlib.suppress(RedisError, OSError):
            async with client(world.replica) as r:
                role = await r.execute_command("ROLE")
            return bool(role[0] == b"master") and await world.current_master() is world.replica
        return False

    stop = time.monotonic() + FAILOVER_WITHIN
    while not await replica_is_master():
        assert time.monotonic() < stop, f"no failover within {FAILOVER_WITHIN} s"
        await asyncio.sleep(0.1)
    fault.healthy = time.monotonic()
    fault.evidence.append(f"{how}; replica :{world.replica.port} master {load.at(fault.healthy)}")
    fault.evidence.append(f"/health right after: {await health(world.servers)}")
    await during
    check_covered(fault, load, fault.began, fault.healthy, "during the failover", started=True)
    return fault


async def kill_the_sentinel_master(world: SentinelWorld, load: Load) -> Fault:
    load.interval = 0.25
    fault = Fault(time.monotonic())
    world.master.kill()
    return await promoted(world, load, fault, f"master :{world.master.port} killed")


async def sentinel_failover(world: SentinelWorld, load: Load) -> Fault:
    load.interval = 0.25
    fault = Fault(time.monotonic())
    async with client(world.sentinels[0]) as s:
        await s.execute_command("SENTINEL", "FAILOVER", SERVICE)
    return await promoted(world, load, fault, "SENTINEL FAILOVER")


SentinelFault = Callable[[SentinelWorld, Load], Awaitable[Fault]]


@pytest.mark.parametrize(
    "fault_run",
    [
        pytest.param(kill_the_sentinel_master, id="sentinel-master-killed"),
        pytest.param(sentinel_failover, id="sentinel-failover"),
    ],
)
async def test_sentinel_no_stale_read_no_error_and_the_cache_comes_back(
    sentinel_world: SentinelWorld, fault_run: SentinelFault
) -> None:
    await run_cell(sentinel_world, fault_run)
