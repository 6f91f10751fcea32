"""The shared backend as the cache's read and write paths call it: every call made in one
event-loop tick goes to the backend as one batch (one MGET, one SET pipeline, one lease
pipeline, one SET NX GET pipeline), through the trust's gates, and to this process's fallback
where the trust allows it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from cache.backends.base import Backend
from cache.backends.memory import MemoryBackend
from cache.batch import TickBatcher
from cache.exceptions import BackendError
from cache.keys import GENERATION_TTL_MS, new_generation
from cache.trust import Trust


@dataclass
class Read:
    backend: Backend | None  # None: neither the shared backend nor a fallback could be read
    shared: bool  # read from the shared backend (not the fallback)
    epoch: str | None  # the epoch once the read was done
    values: list[bytes | None] = field(default_factory=list)


class SharedCalls:
    """The four batched calls of one process's cache, over `trust`."""

    def __init__(self, trust: Trust) -> None:
        self.trust = trust
        self.reads: TickBatcher[list[str], Read] = TickBatcher(self._read)
        self.writes: TickBatcher[tuple[str, bytes, int] | str, None] = TickBatcher(self._write)
        self.leases: TickBatcher[tuple[str, bytes, int], bool] = TickBatcher(self._acquire)
        self.settles: TickBatcher[tuple[Backend, str], bytes] = TickBatcher(self._settle)

    @property
    def fallback(self) -> MemoryBackend | None:
        return self.trust.fallback

    async def epoch(self) -> str | None:
        return self.trust.current() or await self.trust.ready()

    async def _read(self, batches: Sequence[list[str]]) -> list[Read]:
        unique = list(dict.fromkeys(key for keys in batches for key in keys))
        if self.trust.unrecorded or self.trust.unannounced:
            await self.trust.retry()
        backend = self.trust.reader()
        values: list[bytes | None] | None = None
        if backend is not None:
            try:
                values = await backend.get_many(unique)
            except BackendError:
                backend = None
        shared = backend is not None
        if backend is None or values is None:
            # Degraded: the epoch from where the data is, then what this process knows.
            await self.trust.refresh()
            backend = self.fallback
            values = [None] * len(unique)
            if backend is not None:
                values = await backend.get_many(unique)
        epoch = await self.epoch()
        found = dict(zip(unique, values, strict=True))
        return [Read(backend, shared, epoch, [found[key] for key in keys]) for keys in batches]

    async def _write(self, items: Sequence[tuple[str, bytes, int] | str]) -> list[None]:
        """Entries to store and (plain strings) leases to release, in one pipeline."""
        entries = [item for item in items if not isinstance(item, str)]
        releases = [item for item in items if isinstance(item, str)]
        backend = self.trust.writer()
        if backend is not None:
            try:
                await backend.set_many(entries, releases)
                return [None] * len(items)
            except BackendError:
                pass
        if self.fallback is not None:
            await self.fallback.set_many(entries)
        return [None] * len(items)

    async def _acquire(self, items: Sequence[tuple[str, bytes, int]]) -> list[bool]:
        backend = self.trust.writer()
        if backend is None:
            raise BackendError("the breaker is open")
        return await backend.acquire_many(items)

    async def settle_generations(
        self, backend: Backend, keys: list[str], generations: list[bytes | None]
    ) -> tuple[bytes, ...]:
        """Every tag's generation, giving a fresh random one to tags that have none (evicted,
        or never bumped). Read before computing, so they predate the value."""
        missing = [i for i, g in enumerate(generations) if g is None]
        if not missing:
            return tuple(g for g in generations if g is not None)
        held = await asyncio.gather(*(self.settles.submit((backend, keys[i])) for i in missing))
        settled = list(generations)
        for i, generation in zip(missing, held, strict=True):
            settled[i] = generation
        return tuple(g for g in settled if g is not None)

    async def _settle(self, items: Sequence[tuple[Backend, str]]) -> list[bytes]:
        """One SET NX GET pipeline per backend for every tag settled in this tick."""
        found: dict[tuple[Backend, str], bytes] = {}
        for backend in dict.fromkeys(b for b, _ in items):
            keys = list(dict.fromkeys(k for b, k in items if b is backend))
            held = await backend.set_if_absent_get(
                [(k, new_generation(), GENERATION_TTL_MS) for k in keys]
            )
            found.update({(backend, k): v for k, v in zip(keys, held, strict=True)})
        return [found[item] for item in items]
