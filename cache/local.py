"""The in-process tier: a byte-bounded LRU whose entries are dropped by tag.

It is trusted only while this process hears every invalidation: its own directly, other
processes' through Redis pub/sub. When the subscription is lost it is emptied and bypassed
until the subscription is back.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LocalEntry:
    value: bytes
    tags: tuple[str, ...]
    created: float
    expires: float
    meta: tuple[str, ...] = ()
    etag: bytes = b""
    window: float = 0.0  # seconds past `expires` it may still be served while recomputed


class LocalTier:
    """At most `max_bytes` of values; least recently used go first."""

    def __init__(
        self, max_bytes: int = 64 * 1024 * 1024, clock: Callable[[], float] = time.time
    ) -> None:
        self.max_bytes = max_bytes
        self.clock = clock
        self.trusted = True
        # Set by the cache while it listens: is it hearing invalidations right now?
        self.live: Callable[[], bool] = lambda: True
        self._entries: OrderedDict[str, LocalEntry] = OrderedDict()
        self._by_tag: dict[str, set[str]] = {}
        self._bytes = 0

    def get(self, key: str) -> LocalEntry | None:
        if not self.trusted or not self.live():
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self.clock()
        if entry.expires <= now:
            if entry.expires + entry.window <= now:
                self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def stale(self, key: str) -> LocalEntry | None:
        """An entry past its max age but inside its stale-while-revalidate window: no write
        has invalidated it (that drops it at once), only time has passed."""
        if not self.trusted or not self.live():
            return None
        entry = self._entries.get(key)
        if entry is None or entry.expires + entry.window <= self.clock():
            return None
        return entry

    def put(self, key: str, entry: LocalEntry) -> None:
        if not self.trusted or not self.live() or len(entry.value) > self.max_bytes // 4:
            return
        self._drop(key)
        self._entries[key] = entry
        self._bytes += len(entry.value)
        for tag in entry.tags:
            self._by_tag.setdefault(tag, set()).add(key)
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def invalidate(self, tags: Iterable[str]) -> None:
        for tag in tags:
            if tag == "*":
                self.clear()
                return
            for key in list(self._by_tag.get(tag, ())):
                self._drop(key)

    def clear(self) -> None:
        self._entries.clear()
        self._by_tag.clear()
        self._bytes = 0

    def distrust(self) -> None:
        """Invalidations may have been missed: forget everything and stop serving."""
        self.trusted = False
        self.clear()

    def trust(self) -> None:
        self.clear()
        self.trusted = True

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._bytes -= len(entry.value)
        for tag in entry.tags:
            keys = self._by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_tag[tag]

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)
