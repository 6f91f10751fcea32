"""Stale while revalidate, on expiry only: the background flight that recomputes an entry
served past its max age.

`Cache.resolve` decides when an entry may be served stale (its generations all current, its
`swr` window not over, its boundary not crossed); this runs the one recomputation, in the
entry's flight under the generations it was read with, so that later stale readers and
peer processes (through the lease) join it instead of computing again. What it stores is
keyed by those generations: if a write lands meanwhile, nobody is ever served it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from cache.backends.base import Backend
from cache.codec import Decoder
from cache.flight import Flights

logger = logging.getLogger("vajra.cache")


class Revalidator:
    """The background recomputations of this process, each at most once at a time."""

    def __init__(self, flights: Flights) -> None:
        self.flights = flights
        self.tasks: set[asyncio.Task[None]] = set()

    def start(
        self,
        shared: Backend | None,
        key: str,
        generations: tuple[bytes, ...],
        ttl_ms: int,
        compute: Callable[[], Awaitable[Any]],
        decode: Decoder,
    ) -> None:
        if self.flights.running(key, generations):
            return

        async def run() -> None:
            try:
                await self.flights.run(shared, key, generations, ttl_ms, compute, decode)
            except Exception:  # the stale entry stays until its window ends; then a miss
                logger.warning("revalidating %s failed", key, exc_info=True)

        # A clean context: nothing of the request that found it stale leaks into it.
        task = asyncio.get_running_loop().create_task(run(), context=contextvars.Context())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def idle(self) -> None:
        """Wait for every revalidation under way (tests, shutdown)."""
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await self.idle()
