"""Redis Cluster: entries spread over the masters, everything that must agree in one slot.

The keys that must be read and written together (tag generations, the epoch generation, the
restart marker, the invalidation channel and its acknowledgements) carry one hash tag (see
`KeySpace`), so an invalidation is one pipeline to one node, its message published there
with SPUBLISH and heard there by every process's SSUBSCRIBE. Entries spread: a read is one
MGET per slot, pipelined per node, nodes in parallel (one round trip per node touched).

Reads and writes go to masters only, with the same short timeouts and no retries as one node:
a failed call is a miss for the circuit breaker to count, and the next call finds the new
topology. The restart guard runs on every new connection (a restarted node, a promoted
replica): only the node that holds the marker's slot answers its GET, the others say MOVED.
Reading an entry and its generations from different nodes, not atomically, stays safe: an
entry records the generations it was computed under, and a mutation returns only once its
bumps are in, so a read that starts after it sees the new generation whatever the order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from redis import asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, TryAgainError

from cache.backends.redis import ERRORS, RedisBackend
from cache.backends.urls import ClusterUrl, parse_redis_url
from cache.exceptions import BackendError


class ClusterBackend(RedisBackend):
    """`redis+cluster://[[user]:password@]host:port[,host:port...]` (seed nodes; any of them
    will do), `rediss+cluster://` for TLS."""

    sharded_pubsub = True

    def __init__(self, url: str, *, timeout: float = 0.1, max_connections: int = 64) -> None:
        target = parse_redis_url(url)
        if not isinstance(target, ClusterUrl):
            raise ValueError("ClusterBackend needs a redis+cluster:// URL")
        self.url = url
        self.target = target
        self._guard = None
        self._timeout = timeout
        self.cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            username=target.username,
            password=target.password,
            ssl=target.tls,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # No retries: a call that failed is a miss; the next one finds the new topology.
            retry=Retry(NoBackoff(), 0),
            max_connections=max_connections,
            health_check_interval=0,
        )
        # Every connection the cluster client makes to a node runs the restart guard before
        # it serves anything (the async client has no option for it; its nodes take their
        # connection settings from here).
        self.cluster.nodes_manager.connection_kwargs["redis_connect_func"] = self._on_connect
        # The commands both clients share (pipelines, SET, MGET...) are written against
        # `client`; what only a cluster has goes through `cluster`.
        self.client = cast(aioredis.Redis, self.cluster)

    def _failed(self, what: str, exc: BaseException) -> BackendError:
        # The next call reads the topology again. redis-py does this itself after a single
        # command's connection error, but not after a pipeline's (mget_nonatomic and every
        # write here are pipelines): without it, a failed-over master's slots would be asked
        # of the dead node for as long as only pipelines ran.
        self.cluster._initialize = True
        return super()._failed(what, exc)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        try:
            found = await self._mget_by_node(keys)
            if found is None:  # a slot is moving: redis-py follows the redirections
                found = cast(list[bytes | None], await self.cluster.mget_nonatomic(list(keys)))
            return found
        except ERRORS as exc:
            raise self._failed("MGET", exc) from exc

    async def _mget_by_node(self, keys: Sequence[str]) -> list[bytes | None] | None:
        """One MGET per slot, pipelined per node, nodes in parallel: what `mget_nonatomic`
        does, without its pipeline machinery (a ClusterPipeline and a policy lookup per
        command cost the cluster 1.8x a one-node read in client CPU). None when a node
        answers with a redirection (MOVED, ASK, TRYAGAIN)."""
        if self.cluster._initialize:  # a failed call asked for the topology again
            await self.cluster.initialize()
        by_node: dict[str, tuple[ClusterNode, dict[int, list[int]]]] = {}
        nodes = self.cluster.nodes_manager
        for i, key in enumerate(keys):
            slot = key_slot(key.encode())
            node = nodes.get_node_from_slot(slot)
            by_node.setdefault(node.name, (node, {}))[1].setdefault(slot, []).append(i)
        found: list[bytes | None] = [None] * len(keys)

        async def one(node: ClusterNode, slots: dict[int, list[int]]) -> bool:
            commands = [
                PipelineCommand(n, "MGET", *(keys[i] for i in at))
                for n, at in enumerate(slots.values())
            ]
            if await node.execute_pipeline(commands):
                for command in commands:
                    if isinstance(command.result, MovedError | AskError | TryAgainError):
                        return False
                raise next(c.result for c in commands if isinstance(c.result, Exception))
            for command, at in zip(commands, slots.values(), strict=True):
                values = cast(list[bytes | None], command.result)
                for i, value in zip(at, values, strict=True):
                    found[i] = value
            return True

        if len(by_node) == 1:
            answered = [await one(*next(iter(by_node.values())))]
        else:
            answered = await asyncio.gather(*(one(n, s) for n, s in by_node.values()))
        return found if all(answered) else None

    async def _unlink(self, keys: Sequence[Any]) -> int:
        # One UNLINK per key (they are in different slots), pipelined per node.
        async with self.cluster.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.execute_command("UNLINK", key)
            return sum(int(n) for n in await pipe.execute())

    def _queue_unlink(self, pipe: Any, keys: Sequence[str]) -> None:
        for key in keys:
            pipe.execute_command("UNLINK", key)

    def _queue_publish(self, pipe: Any, channel: str, message: bytes) -> None:
        # Sharded: the channel has the generations' hash tag, so this goes to their node.
        pipe.execute_command("SPUBLISH", channel, message)

    async def _publish(self, channel: str, message: bytes) -> int:
        return int(await self.cluster.spublish(channel, message))

    async def ping(self) -> None:
        """Every master answers, or the cache is not all there."""
        try:
            await self.cluster.initialize()
            masters = self.cluster.get_primaries()
            await asyncio.gather(*(self.cluster.ping(target_nodes=node) for node in masters))
        except ERRORS as exc:
            raise self._failed("PING", exc) from exc

    async def pubsub_client(
        self, channel: str, *, read_timeout: float, connect_timeout: float
    ) -> aioredis.Redis:
        """A client on the master of `channel`'s slot, found afresh (after a failover the
        cluster client's table may still name the old one), checked to be a master: only
        subscribers on the node that publishes are counted as receivers."""
        host, port = await self._master_of(channel, connect_timeout)
        client = self._node(host, port, read_timeout, connect_timeout)
        try:
            role = await client.execute_command("ROLE")  # type: ignore[no-untyped-call]
            if not role or role[0] != b"master":
                raise ConnectionError(f"{host}:{port} is not a master")
        except BaseException:
            await client.aclose()
            raise
        return client

    def _node(
        self, host: str, port: int, read_timeout: float, connect_timeout: float
    ) -> aioredis.Redis:
        """A plain client on one node, outside the cluster client's pools, no retries."""
        return aioredis.Redis(
            host=host,
            port=port,
            username=self.target.username,
            password=self.target.password,
            ssl=self.target.tls,
            socket_timeout=read_timeout,
            socket_connect_timeout=connect_timeout,
            health_check_interval=0,
            retry=Retry(NoBackoff(), 0),
        )

    async def _master_of(self, key: str, connect_timeout: float) -> tuple[str, int]:
        """The master that owns `key`'s slot, as the first node that answers says."""
        slot = key_slot(key.encode())
        seeds = [(n.host, int(n.port)) for n in self.cluster.get_nodes()]
        seeds += [s for s in self.target.nodes if s not in seeds]
        failure: BaseException | None = None
        for host, port in seeds:
            node = self._node(host, port, connect_timeout, connect_timeout)
            try:
                slots = await node.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
                for low, high, master, *_ in slots:
                    if low <= slot <= high:
                        return (master[0].decode() or host), int(master[1])
            except ERRORS as exc:
                failure = exc
            finally:
                await node.aclose()
        raise ConnectionError(f"no node names the master of slot {slot}: {failure!r}")

    async def describe(self) -> dict[str, Any]:
        try:
            await self.cluster.initialize()
            masters = len(self.cluster.get_primaries())
            replicas = len(self.cluster.get_replicas())
        except ERRORS:
            masters = replicas = 0
        return {"redis_topology": "cluster", "redis_nodes": masters, "redis_replicas": replicas}

    async def close(self) -> None:
        await self.cluster.aclose()
