"""The end-to-end fault matrix (issue 8): two `vajra serve` processes, one redis-server of the
test's own, readers and a crawler over HTTP, and Redis broken the ways the world breaks it.
The harness and the promise it checks: tests/consistency.py.

Run: `PYTHONPATH=. .venv/bin/python -m pytest tests/test_fault_matrix.py -s` (-s prints each
cell's counts). About 3 minutes on 2 cores; each cell is bounded to 60 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import asyncio as aioredis

from resolvers.store import Database
from tests.conftest import POSTGRES_URL, _unavailable
from tests.consistency import (
    CELL_SECONDS,
    EPOCH_POLL_MS,
    Fault,
    check_covered,
    check_disconnected,
    run_cell,
    seeded,
    server_env,
    totals,
)
from tests.load import BOTH, STATS, Load, health, until_disconnected
from tests.redis_server import RedisServer, free_port
from tests.servers import Server, start_all, vajra

pytestmark = pytest.mark.redis

FaultRun = Callable[["World", Load], Awaitable[Fault]]
FRESH_WITHIN = EPOCH_POLL_MS / 1000 + 1.0  # the documented bound plus 1 s of slack
# Read only around the snapshot: cached in the dump, invalidated after it, never re-read
# before the restart, so only Redis (not a process's memory) can answer it afterwards.
PROBE = '{ stats { totalThreats } threats(limit: 2, filter: {source: "nvd"}) { total } }'


# -- the world: a database, Redis, two servers -------------------------------------------------


@dataclass
class World:
    redis: RedisServer
    servers: list[Server]
    db_path: Path
    env: dict[str, str]
    namespace: str

    def admin(self) -> aioredis.Redis:
        """A client of the test's own for CONFIG, SAVE, REPLICAOF and checks."""
        return aioredis.Redis.from_url(self.redis.url, socket_timeout=2)

    async def stored(self) -> int:
        async with self.admin() as admin:
            return len([k async for k in admin.scan_iter(match=f"{self.namespace}:*", count=1000)])


@pytest.fixture
async def world(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[World]:
    """500 threats in a SQLite file, the test's redis-server, servers A and B on both."""
    path = tmp_path / "vajra.db"
    url = f"sqlite+aiosqlite:///{path}"
    await seeded(url, 500)
    namespace = "m" + secrets.token_hex(4)
    env = server_env(url, redis_server.url, namespace)
    servers = [Server("A", env, tmp_path), Server("B", env, tmp_path)]
    try:
        await start_all(servers)
        yield World(redis_server, servers, path, env, namespace)
    finally:
        for server in servers:
            server.kill()


# -- faults: each breaks Redis, proves it broke, and returns when Redis is healthy again -------


def ingest_now(world: World, load: Load) -> asyncio.Task[Any]:
    """One ingest started now, inside the fault for certain: the crawler's own may all
    start just before it and return just after (an ingest during an outage waits out the
    epoch's window, about 1.7 s)."""
    return asyncio.create_task(load.ingest(world.servers[0]))


async def kill_and_restart_empty(world: World, load: Load) -> Fault:
    fault = Fault(time.monotonic())
    load.interval = 0.25
    world.redis.kill()
    during = ingest_now(world, load)
    seen = await until_disconnected(world.servers, 2.0)
    await asyncio.sleep(max(0.0, fault.began + 2.5 - time.monotonic()))
    down_until = time.monotonic()
    await during
    await asyncio.to_thread(world.redis.start)
    fault.healthy = time.monotonic()
    check_disconnected(fault, seen)
    check_covered(fault, load, fault.began, down_until, "while Redis was dead", started=True)
    return fault


async def restart_from_snapshot(world: World, load: Load) -> Fault:
    """SAVE; ingest (acknowledged); kill -9; start again on a dump that lacks the invalidation."""
    load.interval = None
    await asyncio.sleep(0.5)  # the crawler's last ingest has returned
    fault = Fault(time.monotonic())
    for _ in range(2):
        for server in world.servers:
            await load.read(server, PROBE)
    await asyncio.sleep(0.3)
    async with world.admin() as admin:
        await admin.save()
        saved = time.monotonic()
        for server in world.servers:
            await load.ingest(server)
        await asyncio.sleep(0.5)  # readers re-cache under the new generations
        acknowledged = time.monotonic()
    world.redis.kill()
    await asyncio.sleep(0.3)
    await asyncio.to_thread(world.redis.start)
    fault.healthy = time.monotonic()
    async with world.admin() as admin:
        keys = [k async for k in admin.scan_iter(match=f"{world.namespace}:*", count=1000)]
    if keys:
        fault.evidence.append(f"the restarted Redis loaded {len(keys)} keys of ours from the dump")
    else:
        fault.missing.append("the restarted Redis holds none of our keys: no snapshot loaded")
    probes = []
    for _ in range(5):
        for server in world.servers:
            probes.append(await load.read(server, PROBE))
        await asyncio.sleep(0.1)
    fault.evidence.append("probe reads after the restart: " + " ".join(
        f"{r.server}:{r.total}/{r.cache}" for r in probes
    ))  # fmt: skip
    check_covered(fault, load, saved, acknowledged, "between SAVE and kill -9")
    return fault


async def pause_briefly(world: World, load: Load) -> Fault:
    """SIGSTOP for 3 s with the crawler ingesting throughout, then SIGCONT."""
    load.interval = 0.25
    fault = Fault(time.monotonic())
    world.redis.pause()
    during = ingest_now(world, load)
    await asyncio.sleep(1.5)
    seen = await health(world.servers)
    await asyncio.sleep(max(0.0, fault.began + 3.0 - time.monotonic()))
    world.redis.resume()
    fault.healthy = time.monotonic()
    await during
    check_disconnected(fault, seen)
    check_covered(fault, load, fault.began, fault.healthy, "while Redis was stopped", started=True)
    return fault


async def pause_until_breakers_open(world: World, load: Load) -> Fault:
    """SIGSTOP; ~2 s of reads open the breakers; ingest; ~5 s more; SIGCONT."""
    load.interval = None
    fault = Fault(time.monotonic())
    world.redis.pause()
    await asyncio.sleep(2.0)
    seen = await until_disconnected(world.servers)
    ingesting = time.monotonic()
    for server in world.servers:
        await load.ingest(server)
    load.interval = 1.0
    await asyncio.sleep(5.0)
    world.redis.resume()
    fault.healthy = time.monotonic()
    check_disconnected(fault, seen)
    check_covered(fault, load, ingesting, fault.healthy, "after the breakers opened")
    return fault


async def refuse_writes_out_of_memory(world: World, load: Load) -> Fault:
    """`maxmemory 1` under `noeviction`: reads work, every write is refused with OOM."""
    async with world.admin() as admin:
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", 1)
        fault = Fault(time.monotonic())
        try:
            await admin.set("matrix-probe", "x")
            fault.missing.append("a SET was accepted under maxmemory 1")
        except aioredis.ResponseError as exc:
            fault.evidence.append(f"SET refused: {exc}")
        load.interval = 0.25
        during = ingest_now(world, load)
        await asyncio.sleep(3.0)
        end = time.monotonic()
        await during
        await admin.config_set("maxmemory", 0)
        fault.healthy = time.monotonic()
    check_covered(fault, load, fault.began, end, "while Redis refused writes", started=True)
    return fault


async def turn_read_only(world: World, load: Load) -> Fault:
    """`REPLICAOF` a port nobody listens on: a read-only replica still serving reads."""
    async with world.admin() as admin:
        await admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        fault = Fault(time.monotonic())
        try:
            await admin.set("matrix-probe", "x")
            fault.missing.append("a SET was accepted by the replica")
        except aioredis.ResponseError as exc:
            fault.evidence.append(f"SET refused: {exc}")
        load.interval = 0.25
        during = ingest_now(world, load)
        await asyncio.sleep(3.0)
        end = time.monotonic()
        await during
        await admin.execute_command("REPLICAOF", "NO", "ONE")
        fault.healthy = time.monotonic()
    check_covered(fault, load, fault.began, end, "while Redis was read-only", started=True)
    return fault


async def kill_server_with_invalidation_pending(world: World, load: Load) -> Fault:
    """SIGSTOP Redis until A's breaker opens; ingest on A; SIGKILL A; SIGCONT; start A again."""
    a = world.servers[0]
    load.interval = None
    fault = Fault(time.monotonic())
    world.redis.pause()
    await asyncio.sleep(2.0)
    seen = await until_disconnected([a])
    ingest = await load.ingest(a)
    await asyncio.sleep(0.3)
    a.kill()
    world.redis.resume()
    fault.healthy = time.monotonic()
    a.start()
    await a.wait_healthy()
    fault.evidence.append(f"A restarted {load.at(time.monotonic())}")
    check_disconnected(fault, seen)
    if ingest.ok:
        fault.evidence.append(f"ingest on A acknowledged {load.at(ingest.returned)}, then SIGKILL")
    else:
        fault.missing.append(f"the ingest on A was not acknowledged: {ingest.detail}")
    return fault


# -- the cells ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault_run",
    [
        pytest.param(kill_and_restart_empty, id="kill-9-restart-empty"),
        pytest.param(restart_from_snapshot, id="restart-from-snapshot"),
        pytest.param(pause_briefly, id="sigstop-3s"),
        pytest.param(pause_until_breakers_open, id="sigstop-breakers-open"),
        pytest.param(refuse_writes_out_of_memory, id="maxmemory-noeviction"),
        pytest.param(turn_read_only, id="replicaof-read-only"),
        pytest.param(kill_server_with_invalidation_pending, id="server-killed-bump-pending"),
    ],
)
async def test_no_stale_read_no_error_and_the_cache_comes_back(
    world: World, fault_run: FaultRun
) -> None:
    await run_cell(world, fault_run)


# -- two databases, one namespace ----------------------------------------------------------------


@pytest.fixture
async def postgres_database() -> AsyncIterator[str]:
    """A throwaway PostgreSQL database with 200 threats; dropped afterwards."""
    import asyncpg

    admin_url = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    try:
        conn = await asyncpg.connect(admin_url, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        _unavailable(f"PostgreSQL is unreachable at {POSTGRES_URL}", exc)
    name = "vajra_matrix_" + secrets.token_hex(4)
    await conn.execute(f"CREATE DATABASE {name}")
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    try:
        await seeded(url, 200, seed_value=3)
        yield url
    finally:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.close()


@pytest.mark.postgres
async def test_two_databases_sharing_a_namespace_never_answer_for_each_other(
    redis_server: RedisServer, postgres_database: str, tmp_path: Path
) -> None:
    path = tmp_path / "vajra.db"
    await seeded(f"sqlite+aiosqlite:///{path}", 300)
    db = Database(postgres_database)
    try:
        pg_total = await db.count()
        async with db.engine.connect() as conn:
            pg_nvd = (
                await conn.exec_driver_sql("SELECT count(*) FROM threats WHERE source = 'nvd'")
            ).scalar_one()
    finally:
        await db.close()
    own = {"sqlite": totals(path), "postgres": (pg_total, int(pg_nvd))}
    assert own["sqlite"] != own["postgres"]
    namespace = "shared" + secrets.token_hex(4)
    servers = [
        Server("sqlite", server_env(f"sqlite+aiosqlite:///{path}", redis_server.url, namespace), tmp_path),
        Server("postgres", server_env(postgres_database, redis_server.url, namespace), tmp_path),
    ]  # fmt: skip
    foreign, errors, answers = [], [], 0
    try:
        async with asyncio.timeout(CELL_SECONDS - 5):
            await start_all(servers)
            async with httpx.AsyncClient(timeout=10) as http:
                for i in range(400):
                    server, query = servers[i % 2], (BOTH, STATS)[i // 2 % 2]
                    response = await http.post(f"{server.url}/graphql", json={"query": query})
                    body = response.json()
                    if response.status_code != 200 or body.get("errors"):
                        errors.append(f"{server.name}: HTTP {response.status_code} {body}")
                        continue
                    answers += 1
                    total, nvd = own[server.name]
                    data = body["data"]
                    got = (data["stats"]["totalThreats"], data.get("threats", {}).get("total", nvd))
                    if got != (total, nvd):
                        foreign.append(
                            f"#{i} {server.name} answered {got}, its own is {(total, nvd)} "
                            f"(X-Cache={response.headers.get('x-cache')})"
                        )
    finally:
        for server in servers:
            server.kill()
    summary = (
        f"{len(foreign)} foreign answers and {len(errors)} errors in {answers} answers "
        f"(own totals {own}): {foreign[:5]} {errors[:3]}"
    )
    print(summary)
    assert not foreign, summary
    assert not errors, summary


# -- writes that bypass the API: the database's cache epoch ------------------------------------


def time_to_fresh(load: Load, server: str, since: float, total: int, nvd: int) -> float:
    """Seconds from `since` until `server` answers (total, nvd) on every read from then on;
    inf when its last read is still stale."""
    reads = [r for r in load.reads if r.server == server and r.started >= since and r.total]
    if not reads:
        return float("inf")
    stale = [r for r in reads if r.total < total or (r.nvd is not None and r.nvd < nvd)]
    if not stale:
        return 0.0
    if stale[-1] is reads[-1]:
        return float("inf")  # still stale at the end
    return stale[-1].ended - since


async def assert_fresh_within_bound(
    world: World, out_of_band: Callable[[], Awaitable[float]]
) -> None:
    base_total, base_nvd = totals(world.db_path)
    async with asyncio.timeout(CELL_SECONDS - 5):
        async with Load(world.servers, base_total, base_nvd) as load:
            await load.until_warm()
            warm = {s.name: load.windows(time.monotonic() - 2, s.name) for s in world.servers}
            exited = await out_of_band()
            await asyncio.sleep(FRESH_WITHIN + 2.0)
    total, nvd = totals(world.db_path)
    assert total > base_total, "the out-of-band write added nothing"
    assert nvd > base_nvd, "the out-of-band write added no nvd threat"
    took = {s.name: time_to_fresh(load, s.name, exited, total, nvd) for s in world.servers}
    errors = load.errors()
    late = {name: t for name, t in took.items() if t > FRESH_WITHIN}
    summary = (
        f"seconds from the write's end until each server answered {total} threats ({nvd} nvd), "
        f"was {base_total} ({base_nvd}): {took}, bound {FRESH_WITHIN:.1f} s; {len(errors)} errors "
        f"{[load.describe(e) for e in errors[:3]]}; warm before (windows): {warm}; last reads: "
        + "; ".join(load.describe(r) for r in load.reads[-4:])
    )
    print(summary)
    assert not late, summary
    assert not errors, summary


async def test_vajra_seed_on_a_live_database_is_seen_within_the_epoch_poll(world: World) -> None:
    async def seed_more() -> float:
        code, output = await vajra(world.env, "seed", "--threats", "300", "--seed", "2")
        assert code == 0, output
        return time.monotonic()

    await assert_fresh_within_bound(world, seed_more)


async def test_cache_invalidate_after_a_plain_sql_write_is_seen_within_the_epoch_poll(
    world: World,
) -> None:
    async def write_and_invalidate() -> float:
        with contextlib.closing(sqlite3.connect(world.db_path)) as conn:
            conn.execute(
                "INSERT INTO threats (source, external_id, title, description, severity, category,"
                " tags, indicators, url, published_at, ingested_at) VALUES ('nvd', ?, 'Out of band',"
                " NULL, 1, 'vulnerability', '[]', '[]', NULL, '2026-01-01 00:00:00.000000',"
                " '2026-01-01 00:00:00.000000')",
                (f"SQL-{uuid.uuid4().hex}",),
            )
            conn.commit()
        code, output = await vajra(world.env, "cache", "invalidate")
        assert code == 0, f"`vajra cache invalidate` exited {code}: {output[-500:]}"
        return time.monotonic()

    await assert_fresh_within_bound(world, write_and_invalidate)
