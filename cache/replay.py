"""Whole-operation refresh: after a write, the hottest operations it made stale are answered
again through the app, in the background, so that the next reader hits instead of running
the operation itself.

A replay is an ordinary miss of the whole-operation cache: it runs after the invalidation
returned, its fields read the tags' new generations (and hit what the field refresh of the
same round just stored), and it is stored under what it read, so nothing computed before the
write is ever served after it. A reader that misses while a replay of its operation is under
way waits for it (one flight per operation) and is answered from what it stored.

Only public operations are tracked, and they are replayed without the caller's credentials or
cookies: a public answer does not depend on who asked. Nor is a header kept as it was sent: a
replay asks for the variant the answer was negotiated as, and sends its body as its media type
alone. At most `capacity` are kept, the coldest dropped first; only those read since their last
replay are replayed again. Rounds come from `cache.refresh.Refresher`, after its field entries,
so they are coalesced the same way.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from cache.http import header, raw_accept

logger = logging.getLogger("vajra.cache")

# What a replayed request keeps of the original: how it was asked, never who asked.
_SCOPE_KEYS = (
    *("type", "asgi", "http_version", "scheme", "server", "root_path"),
    *("path", "raw_path", "method", "query_string"),
)
# A request whose variant, media type or host is longer than this is not replayed.
HEADER_BYTES = 256

Run = Callable[[str, dict[str, Any], bytes], Awaitable[None]]


@dataclass
class HotOperation:
    scope: dict[str, Any]
    body: bytes
    tags: frozenset[str]
    reads: int = 0


class Replays:
    """The hot operations of this process and their replays."""

    def __init__(
        self,
        *,
        capacity: int = 256,
        concurrency: int = 4,
        wait: float = 2.0,
        counts: Counter[str] | None = None,
        variant: Callable[[MutableMapping[str, Any]], str | None] = raw_accept,
    ) -> None:
        """`variant(scope)` is what a request's answer was negotiated as, sent as the Accept
        header of its replays (None: not replayed)."""
        self.capacity = capacity
        self.variant = variant
        # operations and operations_failed (replayed after a write or on expiry)
        self.counts: Counter[str] = Counter() if counts is None else counts
        self.wait = wait  # how long a reader waits for a replay before running the operation
        self._limit = asyncio.Semaphore(concurrency)
        self._hot: dict[str, HotOperation] = {}
        self._flights: dict[str, asyncio.Future[None]] = {}
        self._background: set[asyncio.Task[None]] = set()

    def seen(
        self, key: str, scope: MutableMapping[str, Any], body: bytes, tags: Iterable[str]
    ) -> None:
        """A read of operation `key` (answered, or computed and stored): count it."""
        hot = self._hot.get(key)
        if hot is None:
            if self.capacity <= 0:
                return
            kept = self._request(scope, body)
            if kept is None:
                return
            if len(self._hot) >= self.capacity:
                coldest = min(self._hot, key=lambda k: self._hot[k].reads)
                del self._hot[coldest]
            hot = self._hot[key] = HotOperation(kept, body, frozenset(tags))
        hot.reads += 1

    def _request(self, scope: MutableMapping[str, Any], body: bytes) -> dict[str, Any] | None:
        """What a replay of this request is sent as (None: it is not replayed): a few bounded
        headers, whatever the request sent."""
        variant = self.variant(scope)
        if variant is None or len(variant) > HEADER_BYTES or not variant.isascii():
            return None
        headers = [(b"accept", variant.encode()), (b"content-length", str(len(body)).encode())]
        media = (header(scope, b"content-type") or b"").split(b";")[0].strip()
        host = header(scope, b"host") or b""
        for name, value in ((b"content-type", media), (b"host", host)):
            if len(value) > HEADER_BYTES:
                return None
            if value:
                headers.append((name, value))
        kept = {name: scope[name] for name in _SCOPE_KEYS if name in scope}
        kept["headers"] = headers
        kept["client"] = None
        return kept

    def flight(self, key: str) -> asyncio.Future[None] | None:
        """The replay of `key` under way, if any."""
        return self._flights.get(key)

    def revalidate(self, key: str, run: Run) -> bool:
        """Replay `key` in the background (unless a replay is under way): it expired, and a
        reader is being served the stale entry meanwhile. False if `key` is not tracked
        (then nothing can replay it: the reader computes it)."""
        hot = self._hot.get(key)
        if hot is None:
            return False
        if key not in self._flights:
            task = asyncio.get_running_loop().create_task(
                self._one(key, hot, run), context=contextvars.Context()
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return True

    async def refresh(self, tags: set[str], run: Run) -> None:
        """Replay every hot operation read since its last replay that depends on `tags`."""
        stale = [
            (key, hot)
            for key, hot in self._hot.items()
            if hot.reads and ("*" in tags or not hot.tags.isdisjoint(tags))
        ]
        for _, hot in stale:
            hot.reads = 0
        await asyncio.gather(*(self._one(key, hot, run) for key, hot in stale))

    async def _one(self, key: str, hot: HotOperation, run: Run) -> None:
        async with self._limit:
            if key in self._flights:
                return
            future = self._flights[key] = asyncio.get_running_loop().create_future()
            try:
                await run(key, dict(hot.scope), hot.body)
            except Exception:  # a failed replay leaves a miss for the next reader
                self.counts["operations_failed"] += 1
                logger.warning("replaying an operation failed", exc_info=True)
            else:
                self.counts["operations"] += 1
            finally:
                del self._flights[key]
                future.set_result(None)

    def clear(self) -> None:
        self._hot.clear()
