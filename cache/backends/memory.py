"""A bounded LRU in this process: the stand-in when Redis is away, and the unit tests' backend."""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from cache.backends.base import Backend


class MemoryBackend(Backend):
    """At most `max_entries` keys; least recently used go first, expired ones on sight."""

    name = "memory"

    def __init__(
        self, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._data: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def _get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires <= self._clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def _set(self, key: str, value: bytes, ttl_ms: int) -> None:
        self._data[key] = (value, self._clock() + ttl_ms / 1000)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self._get(key) for key in keys]

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes, int]],
        release: Sequence[str] = (),
        publish: tuple[str, bytes] | None = None,
    ) -> int:
        for key, value, ttl_ms in items:
            self._set(key, value, ttl_ms)
        for key in release:
            self._data.pop(key, None)
        return 0

    async def set_if_absent_get(self, items: Sequence[tuple[str, bytes, int]]) -> list[bytes]:
        held = []
        for key, value, ttl_ms in items:
            current = self._get(key)
            if current is None:
                self._set(key, value, ttl_ms)
                current = value
            held.append(current)
        return held

    async def acquire_many(self, items: Sequence[tuple[str, bytes, int]]) -> list[bool]:
        held = await self.set_if_absent_get(items)
        return [now == token for now, (_, token, _) in zip(held, items, strict=True)]

    async def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._data.pop(key, None)

    async def clear(self, pattern: str) -> int:
        matches = _redis_glob(pattern).fullmatch
        doomed = [key for key in self._data if matches(key)]
        for key in doomed:
            del self._data[key]
        return len(doomed)

    async def count(self, prefix: str, limit: int) -> int:
        return min(limit, sum(1 for key in self._data if key.startswith(prefix)))

    async def ping(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._data)


def _redis_glob(pattern: str) -> re.Pattern[str]:
    """Redis's glob (`*`, `?`, `[...]`, and `\\` escaping the next character) as a regex."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            body = "^" + body[1:] if body.startswith("^") else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.S)
