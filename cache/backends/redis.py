"""Redis through redis-py's asyncio client (hiredis when installed): one pool per process,
short timeouts, no retries. Driver errors become BackendError here and nowhere else."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, RedisClusterException, RedisError, ResponseError

from cache.backends.base import Backend
from cache.exceptions import BackendError

# What the driver raises: its errors, socket errors, and the cluster client's own (which are
# not RedisErrors).
ERRORS = (RedisError, OSError, RedisClusterException)


class RedisBackend(Backend):
    """`redis://`, `redis://:password@host:6379/0` or `rediss://` for TLS."""

    name = "redis"
    sharded_pubsub = False  # invalidations by PUBLISH/SUBSCRIBE (Cluster: SPUBLISH/SSUBSCRIBE)

    def __init__(self, url: str, *, timeout: float = 0.1, max_connections: int = 64) -> None:
        self.url = url
        self._guard: tuple[str, str, Callable[[], bytes], int] | None = None
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url, **self._options(timeout, max_connections)
        )

    def _options(self, timeout: float, max_connections: int) -> dict[str, Any]:
        """How every connection of the pool is made, whatever finds the node."""
        return {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            # A pooled connection that died with a restarted server gets one new try; a
            # timeout none (the circuit breaker decides when to try again).
            "retry": Retry(NoBackoff(), 1, supported_errors=(ConnectionError,)),
            "max_connections": max_connections,
            "health_check_interval": 0,
            "redis_connect_func": self._on_connect,
        }

    @classmethod
    def from_client(cls, client: Any) -> RedisBackend:
        """Wrap an existing asyncio client (fakeredis in unit tests)."""
        backend = cls.__new__(cls)
        backend.url = "client"
        backend.client = client
        backend._guard = None
        return backend

    async def pubsub_client(
        self, channel: str, *, read_timeout: float, connect_timeout: float
    ) -> aioredis.Redis:
        """A new client on the node that takes writes now, for one invalidation listener
        (made again after every loss, so that it follows the master)."""
        return aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=read_timeout,
            health_check_interval=0,
        )

    async def describe(self) -> dict[str, Any]:
        return {"redis_topology": "single"}

    def guard_restarts(
        self, marker: str, epoch: str, generation: Callable[[], bytes], ttl_ms: int
    ) -> None:
        """On every new connection, if Redis restarted since `marker` was written (its run_id
        changed, as after a restart that reloaded a snapshot), give `epoch` a new generation
        before the connection serves anything: entries restored from before the restart,
        some invalidated since, are never served."""
        self._guard = (marker, epoch, generation, ttl_ms)

    async def _on_connect(self, connection: Any) -> None:
        await connection.on_connect()
        await self._check(connection)
        if self._guard is None:
            return
        marker, epoch, generation, ttl_ms = self._guard
        await connection.send_command("INFO", "server")
        info = await connection.read_response()
        run_id = next(
            (
                line.split(b":", 1)[1].strip()
                for line in info.splitlines()
                if line.startswith(b"run_id:")
            ),
            b"",
        )
        await connection.send_command("GET", marker)
        try:
            held = await connection.read_response()
        except ResponseError:  # MOVED or ASK: another node of a cluster holds the marker
            return
        if held != run_id:
            await connection.send_command("SET", epoch, generation(), "PX", ttl_ms)
            await connection.read_response()
            await connection.send_command("SET", marker, run_id)
            await connection.read_response()

    def _failed(self, what: str, exc: BaseException) -> BackendError:
        """The cache's own error for a driver's: what failed, and the driver's message."""
        return BackendError(f"{what} failed: {_text(exc)}")

    async def _check(self, connection: Any) -> None:
        """Before a new connection serves anything: is it on a node we may use?"""

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        try:
            # decode_responses is off: values are bytes or None.
            return cast(list[bytes | None], await self.client.mget(keys))
        except ERRORS as exc:
            raise self._failed("MGET", exc) from exc

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes, int]],
        release: Sequence[str] = (),
        publish: tuple[str, bytes] | None = None,
    ) -> int:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key, value, ttl_ms in items:
                    pipe.set(key, value, px=ttl_ms)
                if release:
                    self._queue_unlink(pipe, release)
                if publish is not None:
                    self._queue_publish(pipe, *publish)
                results = await pipe.execute()
        except ERRORS as exc:
            raise self._failed("SET pipeline", exc) from exc
        return int(results[-1]) if publish is not None else 0

    async def set_if_absent_get(self, items: Sequence[tuple[str, bytes, int]]) -> list[bytes]:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key, value, ttl_ms in items:
                    pipe.set(key, value, px=ttl_ms, nx=True, get=True)
                previous = await pipe.execute()
        except ERRORS as exc:
            raise self._failed("SET NX GET", exc) from exc
        return [
            old if old is not None else new
            for old, (_, new, _) in zip(previous, items, strict=True)
        ]

    async def acquire_many(self, items: Sequence[tuple[str, bytes, int]]) -> list[bool]:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key, token, ttl_ms in items:
                    pipe.set(key, token, px=ttl_ms, nx=True)
                return [bool(taken) for taken in await pipe.execute()]
        except ERRORS as exc:
            raise self._failed("lease", exc) from exc

    async def delete(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        try:
            await self._unlink(keys)
        except ERRORS as exc:
            raise self._failed("UNLINK", exc) from exc

    async def _unlink(self, keys: Sequence[Any]) -> int:
        return int(await self.client.unlink(*keys))

    def _queue_unlink(self, pipe: Any, keys: Sequence[str]) -> None:
        pipe.unlink(*keys)

    def _queue_publish(self, pipe: Any, channel: str, message: bytes) -> None:
        pipe.publish(channel, message)

    async def clear(self, pattern: str) -> int:
        # Admin only: SCAN never runs on a read or a mutation path.
        removed = 0
        try:
            batch: list[bytes] = []
            async for key in self.client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    removed += await self._unlink(batch)
                    batch = []
            if batch:
                removed += await self._unlink(batch)
        except ERRORS as exc:
            raise self._failed("clear", exc) from exc
        return removed

    async def count(self, prefix: str, limit: int) -> int:
        found = 0
        try:
            async for _ in self.client.scan_iter(match=_literal(prefix) + "*", count=1000):
                found += 1
                if found >= limit:
                    break
        except ERRORS as exc:
            raise self._failed("count", exc) from exc
        return found

    async def publish(self, channel: str, message: bytes) -> int:
        try:
            return await self._publish(channel, message)
        except ERRORS as exc:
            raise self._failed("PUBLISH", exc) from exc

    async def _publish(self, channel: str, message: bytes) -> int:
        return int(await self.client.publish(channel, message))

    async def ping(self) -> None:
        try:
            await self.client.ping()
        except ERRORS as exc:
            raise self._failed("PING", exc) from exc

    async def close(self) -> None:
        await self.client.aclose()


def _text(exc: BaseException) -> str:
    """The error's class and message: redis-py 8's repr of its errors drops the message."""
    return f"{type(exc).__name__}({exc})"


def _literal(prefix: str) -> str:
    """`prefix` with glob characters escaped, so it matches only itself."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
