"""The contract every backend keeps. All calls raise BackendError, and only that, on failure."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any


class Backend(abc.ABC):
    """Bytes by key, with TTLs, plus the few atomic operations the cache layer needs."""

    name: str = "backend"

    @abc.abstractmethod
    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values in key order; None where a key is missing or expired."""

    @abc.abstractmethod
    async def set_many(
        self,
        items: Sequence[tuple[str, bytes, int]],
        release: Sequence[str] = (),
        publish: tuple[str, bytes] | None = None,
    ) -> int:
        """(key, value, ttl in milliseconds), written together, the `release` keys (finished
        leases) deleted and `publish` (channel, message) sent, in the same round trip.
        Returns how many listeners received `publish` (0 without one)."""

    @abc.abstractmethod
    async def set_if_absent_get(self, items: Sequence[tuple[str, bytes, int]]) -> list[bytes]:
        """Set each key that is missing; return what each key holds afterwards."""

    @abc.abstractmethod
    async def acquire_many(self, items: Sequence[tuple[str, bytes, int]]) -> list[bool]:
        """Take leases (key, token, ttl in ms): True where the key was free and is now ours."""

    @abc.abstractmethod
    async def delete(self, keys: Sequence[str]) -> None: ...

    @abc.abstractmethod
    async def clear(self, pattern: str) -> int:
        """Remove every key matching the glob `pattern`; admin only, may scan. Returns how many."""

    @abc.abstractmethod
    async def count(self, prefix: str, limit: int) -> int:
        """How many keys are under `prefix`, counting up to `limit`."""

    @abc.abstractmethod
    async def ping(self) -> None: ...

    async def publish(self, channel: str, message: bytes) -> int:
        """Send `message` to the listeners of `channel`; how many received it."""
        return 0

    def topology(self) -> int | None:
        """Which master calls go to now: a number that changes whenever that node does, and
        None while no node is confirmed (then nothing heard from it may be trusted). Only a
        backend whose master can move without a call failing (Sentinel) needs more than 0."""
        return 0

    async def describe(self) -> dict[str, Any]:
        """Where the data lives, for a health check; never raises."""
        return {}

    async def close(self) -> None:  # noqa: B027  (optional hook)
        """Release connections."""
