"""Redis behind Sentinel: every call goes to the master the Sentinels name now, never to a
replica. Only how connections find their node differs from `RedisBackend`; a failover is a
few failed calls (misses), then the new master, whose first connection sees a new run_id and
so renews the epoch generation (`guard_restarts`): writes the old master had not passed on
are never relied upon."""

from __future__ import annotations

from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, RedisError

from cache.backends.redis import RedisBackend
from cache.backends.urls import SentinelUrl, parse_redis_url


class SentinelBackend(RedisBackend):
    """`redis+sentinel://[[user]:password@]host:port[,host:port...]/service[?db=N&...]`."""

    def __init__(self, url: str, *, timeout: float = 0.1, max_connections: int = 64) -> None:
        target = parse_redis_url(url)
        if not isinstance(target, SentinelUrl):
            raise ValueError("SentinelBackend needs a redis+sentinel:// URL")
        self.url = url
        self.target = target
        self._guard = None
        self.sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(target.sentinels),
            sentinel_kwargs={
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
                # redis-py's default is ten retries with backoff: a dead Sentinel would
                # cost seconds on every new connection. The next Sentinel is the retry.
                "retry": Retry(NoBackoff(), 0),
                "username": target.sentinel_username,
                "password": target.sentinel_password,
                "health_check_interval": 0,
            },
        )
        self.client = self._master(**self._options(timeout, max_connections))

    def _master(self, **options: Any) -> aioredis.Redis:
        """A client whose connections each ask the Sentinels for the master's address."""
        return self.sentinel.master_for(  # type: ignore[no-any-return]
            self.target.service,
            db=self.target.db,
            username=self.target.username,
            password=self.target.password,
            **options,
        )

    async def _check(self, connection: Any) -> None:
        # The Sentinels' answer may be a moment old: a node that is no longer the master
        # (demoted, or not yet promoted) serves nothing.
        await connection.send_command("ROLE")
        role = await connection.read_response()
        if not role or role[0] != b"master":
            raise ConnectionError(f"{connection.host}:{connection.port} is not the master")

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
        master: str | None
        try:
            host, port = await self.sentinel.discover_master(self.target.service)
            master = f"{host}:{port}"
        except (RedisError, OSError):
            master = None
        return {
            "redis_topology": "sentinel",
            "redis_service": self.target.service,
            "redis_master": master,
        }

    async def close(self) -> None:
        await self.client.aclose()
        await self.sentinel.aclose()
