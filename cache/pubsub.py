"""Invalidations between processes: each publishes the tags it bumps, every process listens
and drops its local entries for them. A process that is not hearing the channel right now
trusts nothing local, and nothing in Redis either.

"Hearing" is proven, not assumed: the listener pings Redis every `window / 5` seconds and is
live only while it has heard from Redis (a pong or a message) within `window` seconds. A
longer silence, even one that ends without an error (Redis paused, then resumed), counts as
a loss: messages from before it may be missing, so the epoch is read again before anything
is trusted (`on_ready`). A process whose invalidation could not be announced waits out
`window` before its mutation returns, so every listener has stopped trusting by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from redis import asyncio as aioredis
from redis.exceptions import RedisError

logger = logging.getLogger("vajra.cache")

RECONNECT_AFTER = 4  # windows of silence before the connection is given up


class ClientFactory(Protocol):
    """Makes a new client on the node that takes writes now (after a failover, the new
    master): `RedisBackend.pubsub_client`."""

    def __call__(self, *, timeout: float, connect_timeout: float) -> aioredis.Redis: ...


class Subscriber:
    """Listens on `channel` in a task of its own, reconnecting with backoff, each time with a
    new client from `connect`.

    Messages are a JSON list of tags (`on_tags`) or `{"epoch": ...}`: another process
    changed the epoch (`on_epoch`). `on_ready` runs after every (re)subscription and every
    silence longer than `window`, before the listener counts as live; it returns False when
    it could not make the process ready (then the listener tries again)."""

    def __init__(
        self,
        connect: ClientFactory,
        channel: str,
        *,
        on_tags: Callable[[list[str]], None],
        on_epoch: Callable[[], None],
        on_ready: Callable[[], Awaitable[bool]],
        on_lost: Callable[[], None],
        window: float = 0.25,
    ) -> None:
        self._connect = connect
        self.channel = channel
        self._on_tags = on_tags
        self._on_epoch = on_epoch
        self._on_ready = on_ready
        self._on_lost = on_lost
        self.window = window
        self.heartbeat = window / 5
        self._task: asyncio.Task[None] | None = None
        self._live = False
        self._heard = -float("inf")
        self.subscribed = asyncio.Event()

    def live(self) -> bool:
        """Subscribed, ready, and heard from Redis within `window` seconds."""
        return self._live and time.monotonic() - self._heard < self.window

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="cache-invalidations")

    async def stop(self) -> None:
        if self._task is None:
            return
        task, self._task = self._task, None
        # Cancelled until it is done: a cancellation that lands while redis-py waits for a
        # reply is sometimes swallowed there, and the listener would go on listening.
        while not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=0.1)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        pause = 0.05
        while True:
            client: aioredis.Redis | None = None
            pubsub: Any = None
            try:
                client = self._connect(timeout=RECONNECT_AFTER * self.window, connect_timeout=0.5)
                pubsub = client.pubsub()
                await self._subscribe(pubsub)
                pause = 0.05
                await self._listen(pubsub)
            except (RedisError, OSError, ValueError) as exc:
                if self.subscribed.is_set():
                    logger.warning("cache invalidation channel lost: %r", exc)
                self._lose()
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
            finally:
                with contextlib.suppress(Exception):
                    if pubsub is not None:
                        await pubsub.aclose()
                    if client is not None:
                        await client.aclose()

    async def _subscribe(self, pubsub: Any) -> None:
        await pubsub.subscribe(self.channel)
        deadline = time.monotonic() + RECONNECT_AFTER * self.window
        while True:  # only once the subscription is confirmed does any message count
            message = await pubsub.get_message(timeout=self.heartbeat)
            if message is not None and message["type"] == "subscribe":
                break
            if time.monotonic() > deadline:
                raise TimeoutError("no confirmation of the subscription")
        self._heard = time.monotonic()
        await self._ready()

    async def _ready(self) -> None:
        if not await self._on_ready():
            raise ConnectionError("could not read the epoch after subscribing")
        self._live = True
        self.subscribed.set()

    async def _listen(self, pubsub: Any) -> None:
        pinged = 0.0
        while True:
            now = time.monotonic()
            if now - pinged >= self.heartbeat:
                await pubsub.ping()
                pinged = now
            message = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=self.heartbeat
            )
            now = time.monotonic()
            if message is None:
                if now - self._heard > RECONNECT_AFTER * self.window:
                    raise TimeoutError(f"nothing heard from Redis for {now - self._heard:.2f} s")
                continue
            if now - self._heard >= self.window:
                # A silence, now over: whatever happened meanwhile, read the epoch again.
                self._lose()
                self._heard = now
                await self._ready()
            self._heard = now
            if message["type"] == "message":
                self._dispatch(orjson.loads(message["data"]))

    def _dispatch(self, payload: Any) -> None:
        if isinstance(payload, list):
            self._on_tags([str(tag) for tag in payload])
        elif isinstance(payload, dict) and "epoch" in payload:
            self._on_epoch()

    def _lose(self) -> None:
        self._live = False
        self.subscribed.clear()
        self._on_lost()
