"""Refresh on write: after an invalidation, recompute the hot entries it made stale, so that
the next reader hits instead of waiting for the origin.

Only fields whose policy says `refresh=True` are tracked: their compute depends on nothing but
their arguments, the database and the clock read when it runs, so it may be called again
later, outside the request that first asked. Each tracked entry counts the reads since it was
last refreshed; at most `capacity` are kept, the coldest dropped first, and only entries read
since their last refresh are refreshed again (one nobody reads costs at most one more
computation).

A refresh is an ordinary miss: it goes through `Cache.resolve`, which reads the tags' *new*
generations before computing and runs in the entry's flight (readers arriving meanwhile wait
for it; a peer process holding the lease is waited for, not duplicated). So nothing computed
before the write is ever stored under the new generations, and a refresh that fails leaves a
miss, never an error.

Rounds are coalesced: one round runs at a time, at most one is pending, and it covers every
tag bumped while it waited; rounds start at least `every` seconds apart, so a crawler writing
ten batches a second costs at most 1/`every` recomputations of an entry per second. The
mutation does not wait: the round runs in the background after it returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cache.codec import Decoder
from cache.policy import CachePolicy

logger = logging.getLogger("vajra.cache")

Compute = Callable[[], Awaitable[Any]]


@dataclass
class Hot:
    """One tracked entry: everything needed to compute it again."""

    policy: CachePolicy
    coordinate: str
    args: dict[str, Any]
    compute: Compute
    decode: Decoder
    tags: frozenset[str]
    reads: int = 0


# Refreshes one entry: Cache.resolve in its refreshing mode.
Refresh = Callable[[Hot], Awaitable[None]]
# Runs after the field entries of each round, with its tags (whole-operation replays).
Follower = Callable[[set[str]], Awaitable[None]]


class Refresher:
    """The hot entries of this process and the background rounds that recompute them."""

    def __init__(
        self,
        refresh: Refresh,
        *,
        capacity: int = 256,
        every: float = 0.5,
        concurrency: int = 4,
        counts: Counter[str] | None = None,
    ) -> None:
        self.capacity = capacity
        self.every = every
        self._refresh = refresh
        self._limit = asyncio.Semaphore(concurrency)
        self._hot: dict[tuple[str, str], Hot] = {}
        self._pending: set[str] = set()
        self._followers: list[Follower] = []
        self._task: asyncio.Task[None] | None = None
        self._last = -float("inf")  # when the last round started (monotonic)
        # rounds, entries refreshed and failed (plus what followers count there)
        self.counts: Counter[str] = Counter() if counts is None else counts

    def seen(
        self,
        policy: CachePolicy,
        coordinate: str,
        encoded_args: str,
        args: dict[str, Any],
        compute: Compute,
        decode: Decoder,
    ) -> None:
        """A read of a refreshable entry: count it, and keep its newest compute."""
        if self.capacity <= 0:
            return
        key = (coordinate, encoded_args)
        hot = self._hot.get(key)
        if hot is None:
            if len(self._hot) >= self.capacity:
                coldest = min(self._hot, key=lambda k: self._hot[k].reads)
                del self._hot[coldest]
            tags = frozenset(policy.dependencies(args))
            hot = self._hot[key] = Hot(policy, coordinate, args, compute, decode, tags)
        else:
            hot.compute = compute
        hot.reads += 1

    @property
    def rounds(self) -> int:
        return self.counts["rounds"]

    @property
    def refreshed(self) -> int:
        return self.counts["entries"]

    @property
    def failed(self) -> int:
        return self.counts["entries_failed"]

    def follow(self, follower: Follower) -> None:
        """Call `follower` with each round's tags once its field entries are refreshed."""
        self._followers.append(follower)

    def schedule(self, tags: Iterable[str]) -> None:
        """These tags were just bumped: refresh what depended on them, soon, in the background."""
        if not self._hot and not self._followers:
            return
        self._pending.update(tags)
        if self._task is None or self._task.done():
            # A clean context: nothing of the mutation's request leaks into the refresh.
            self._task = asyncio.get_running_loop().create_task(
                self._run(), context=contextvars.Context()
            )

    async def _run(self) -> None:
        while self._pending:
            wait = self._last + self.every - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # writes meanwhile join this round
            tags, self._pending = self._pending, set()
            self._last = time.monotonic()
            stale = [hot for hot in self._hot.values() if hot.reads and _depends(hot, tags)]
            self.counts["rounds"] += 1
            for hot in stale:
                hot.reads = 0
            await asyncio.gather(*(self._one(hot) for hot in stale))
            for follower in self._followers:
                try:
                    await follower(tags)
                except Exception:  # a follower's failure costs misses, never the round
                    logger.warning("a refresh follower failed", exc_info=True)

    async def _one(self, hot: Hot) -> None:
        async with self._limit:
            try:
                await self._refresh(hot)
            except Exception:  # a failed refresh leaves a miss for the next reader
                self.counts["entries_failed"] += 1
                logger.warning("refreshing %s failed", hot.coordinate, exc_info=True)
            else:
                self.counts["entries"] += 1

    async def idle(self) -> None:
        """Wait until no round is running or pending (tests, shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._hot.clear()


def _depends(hot: Hot, tags: set[str]) -> bool:
    return "*" in tags or not hot.tags.isdisjoint(tags)
