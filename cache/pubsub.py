"""Invalidations between processes: each publishes the tags it bumps, every process listens
and drops its local entries for them. A process that is not subscribed trusts nothing local."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import orjson
from redis import asyncio as aioredis
from redis.exceptions import RedisError

logger = logging.getLogger("vajra.cache")


class Subscriber:
    """Listens on `channel` in a task of its own, reconnecting with backoff."""

    def __init__(
        self,
        url: str,
        channel: str,
        on_tags: Callable[[list[str]], None],
        on_ready: Callable[[], None],
        on_lost: Callable[[], None],
    ) -> None:
        self.url = url
        self.channel = channel
        self._on_tags = on_tags
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="cache-invalidations")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        pause = 0.05
        while True:
            client = aioredis.Redis.from_url(
                self.url, socket_connect_timeout=0.5, health_check_interval=1
            )
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                # Only once the subscription is confirmed may local entries be trusted.
                while (await pubsub.get_message(timeout=1.0)) is None:
                    pass
                self.subscribed.set()
                self._on_ready()
                pause = 0.05
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._on_tags(orjson.loads(message["data"]))
            except (RedisError, OSError, orjson.JSONDecodeError) as exc:
                if self.subscribed.is_set():
                    logger.warning("cache invalidation channel lost: %r", exc)
                self.subscribed.clear()
                self._on_lost()
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                    await client.aclose()
