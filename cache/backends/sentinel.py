"""Redis behind Sentinel: every call goes to the master the Sentinels confirm now
(`MasterWatch`), never to a replica and never to a demoted master that still says it is one.

- A connection taken from the pool is checked against the watch first, without a round
  trip: one made for an earlier master is closed and made again; with no master confirmed
  within `fresh_for` seconds, the call fails (a miss) instead of trusting an old answer.
- The first connection to a new master sees a new run_id and renews the epoch generation
  (`guard_restarts`): what the old master had not passed on, or took after the replica was
  promoted, is never relied upon.
- An invalidation is confirmed after it is written: if the master changed meanwhile it may
  have gone to the old one, and it fails (the cache then covers it with a new epoch). A
  mutation that wrote to a master this process has just moved to returns only once every
  other process has stopped trusting the one before (`MasterWatch.settled_at`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.connection import Connection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError

from cache.backends.redis import RedisBackend
from cache.backends.urls import SentinelUrl, parse_redis_url
from cache.backends.watch import MasterWatch
from cache.exceptions import BackendError


class MasterConnection(Connection):
    """A connection to the master `watch` confirms now. redis-py calls `connect` every time
    it takes a connection from the pool, so this is where an old one is dropped."""

    def __init__(self, *, watch: MasterWatch, **kwargs: Any) -> None:
        self.watch = watch
        self.term: int | None = None
        super().__init__(**kwargs)

    async def connect(self) -> None:
        self.watch.start()
        term = self.watch.current()
        if term is None:
            await self.watch.poll()
            term = self.watch.current()
        if term is None or self.watch.master is None:
            if self.is_connected:
                await self.disconnect()
            raise ConnectionError("no master is confirmed by the Sentinels")
        if self.is_connected and self.term != term:
            await self.disconnect()  # made for the master before this one
        if not self.is_connected:
            self.host, self.port = self.watch.master
            self.term = term
        await super().connect()  # type: ignore[no-untyped-call]


class SentinelBackend(RedisBackend):
    """`redis+sentinel://[[user]:password@]host:port[,host:port...]/service[?db=N&...]`."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 0.1,
        max_connections: int = 64,
        period: float = 0.25,
        fresh_for: float = 1.0,
    ) -> None:
        target = parse_redis_url(url)
        if not isinstance(target, SentinelUrl):
            raise ValueError("SentinelBackend needs a redis+sentinel:// URL")
        self.url = url
        self.target = target
        self._guard = None
        sentinels = [
            aioredis.Redis(
                host=host,
                port=port,
                username=target.sentinel_username,
                password=target.sentinel_password,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                # A dead Sentinel must not cost retries: the others answer.
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            )
            for host, port in target.sentinels
        ]
        self.watch = MasterWatch(sentinels, target.service, period=period, fresh_for=fresh_for)
        self.client = self._master(**self._options(timeout, max_connections))

    def _master(self, **options: Any) -> aioredis.Redis:
        max_connections = options.pop("max_connections", None)
        pool = ConnectionPool(
            connection_class=MasterConnection,
            watch=self.watch,
            db=self.target.db,
            username=self.target.username,
            password=self.target.password,
            max_connections=max_connections,
            **options,
        )
        return aioredis.Redis.from_pool(pool)  # closing the client closes its pool

    def topology(self) -> int | None:
        return self.watch.current()

    async def _check(self, connection: Any) -> None:
        # The Sentinels confirmed it, but a moment ago: a node that is no longer the master
        # (demoted) or not yet (promotion under way) serves nothing.
        await connection.send_command("ROLE")
        role = await connection.read_response()
        if not role or role[0] != b"master":
            raise ConnectionError(f"{connection.host}:{connection.port} is not the master")

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes, int]],
        release: Sequence[str] = (),
        publish: tuple[str, bytes] | None = None,
    ) -> int:
        if publish is None:  # entries and leases: one lost with an old master is a miss
            return await super().set_many(items, release)
        term = self.watch.current()
        if term is None:
            await self.watch.poll()
            term = self.watch.current()
        receivers = await super().set_many(items, release, publish)
        await self.watch.poll()  # begun after the write: does its master still stand?
        left = self.watch.settled_at() - self.watch.clock()
        if left > 0:
            await asyncio.sleep(left)
        if term is None or self.watch.current() != term:
            raise BackendError("invalidation failed: the master changed while it was written")
        return receivers

    async def pubsub_client(
        self, channel: str, *, read_timeout: float, connect_timeout: float
    ) -> aioredis.Redis:
        return self._master(
            socket_timeout=read_timeout,
            socket_connect_timeout=connect_timeout,
            health_check_interval=0,
            # The listener reconnects by itself, with its own backoff.
            retry=Retry(NoBackoff(), 0),
        )

    async def describe(self) -> dict[str, Any]:
        if self.watch.current() is None:
            await self.watch.poll()
        master = self.watch.master if self.watch.current() is not None else None
        return {
            "redis_topology": "sentinel",
            "redis_service": self.target.service,
            "redis_master": None if master is None else f"{master[0]}:{master[1]}",
        }

    async def close(self) -> None:
        await self.client.aclose()
        await self.watch.close()
