"""One computation per miss: single flight in this process, a lease across processes.

A flight is keyed by the entry's key *and* the generations read before computing, so a
reader that saw newer generations never joins an older computation. A process that finds
another's lease waits for its entry (or for the lease to lapse) instead of computing too.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from cache.backends.base import Backend
from cache.codec import Decoder, encode
from cache.exceptions import BackendError
from cache.keys import KeySpace

FLIGHT_MEMORY = 0.5  # seconds a finished computation is still shared
MISSING = object()

Write = Callable[[tuple[str, bytes, int] | str], Awaitable[None]]
Lease = Callable[[tuple[str, bytes, int]], Awaitable[bool]]


def valid(raw: bytes, generations: Sequence[bytes]) -> Any:
    """(created, value) if the entry was stored under exactly these generations, else
    MISSING (also for anything that is not an entry of ours)."""
    try:
        entry = orjson.loads(raw)
        if entry["g"] != [g.decode() for g in generations]:
            return MISSING
        return entry["t"], entry["v"]
    except (orjson.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        return MISSING


class Flights:
    """`write` stores an entry (key, bytes, ttl in ms) or releases a lease (its key);
    `lease` takes one (key, token, ttl in ms), True when it is ours. Both are batched by the
    cache, so an entry and its lease release share a round trip."""

    def __init__(
        self,
        keys: KeySpace,
        lease_ms: int,
        clock: Callable[[], float],
        write: Write,
        lease: Lease,
    ) -> None:
        self.keys = keys
        self.lease_ms = lease_ms
        self.clock = clock
        self._write = write
        self._lease = lease
        self._flights: dict[tuple[str, tuple[bytes, ...]], asyncio.Future[Any]] = {}

    def running(self, key: str, generations: tuple[bytes, ...]) -> bool:
        return (key, generations) in self._flights

    async def run(
        self,
        shared: Backend | None,
        key: str,
        generations: tuple[bytes, ...],
        ttl_ms: int,
        compute: Callable[[], Awaitable[Any]],
        decode: Decoder,
    ) -> Any:
        """The value computed once for (key, generations); waiters share it. `shared` is the
        backend other processes lease on, None when the generations came from elsewhere."""
        flight_key = (key, generations)
        running = self._flights.get(flight_key)
        if running is not None:
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # this reader itself is being cancelled
                # The leader was cancelled (its client went away): take over.
                return await self.run(shared, key, generations, ttl_ms, compute, decode)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._flights[flight_key] = future
        try:
            value = await self._lead(shared, key, generations, ttl_ms, compute, decode)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it, nobody logs it as lost
            raise
        else:
            future.set_result(value)
            # Readers that saw the same generations but arrive a moment late share this
            # result too: it is exactly as valid as the entry just stored.
            asyncio.get_running_loop().call_later(
                FLIGHT_MEMORY, self._flights.pop, flight_key, None
            )
            return value
        finally:
            if future.cancelled() or future.exception() is not None:
                self._flights.pop(flight_key, None)

    async def _lead(
        self,
        shared: Backend | None,
        key: str,
        generations: tuple[bytes, ...],
        ttl_ms: int,
        compute: Callable[[], Awaitable[Any]],
        decode: Decoder,
    ) -> Any:
        lease = None
        if shared is not None:
            lease = self.keys.lease(key, generations)
            try:
                if not await self._lease((lease, secrets.token_bytes(8), self.lease_ms)):
                    peer = await self._await_peer(shared, key, lease, generations, decode)
                    lease = None  # not ours
                    if peer is not MISSING:
                        return peer
            except BackendError:
                lease = None
        try:
            value = await compute()
            stamp = {
                "t": round(self.clock(), 3),
                "g": [g.decode() for g in generations],
                "v": value,
            }
            # Submitted in one tick: the entry and the lease release share a pipeline.
            pending = [self._write((key, encode(stamp), ttl_ms))]
            if lease is not None:
                pending.append(self._write(lease))
                lease = None
            await asyncio.gather(*pending)
        finally:
            if lease is not None:  # the computation failed: let peers try at once
                await self._write(lease)
        return value

    async def _await_peer(
        self,
        backend: Backend,
        key: str,
        lease: str,
        generations: tuple[bytes, ...],
        decode: Decoder,
    ) -> Any:
        """Another process holds the lease: wait for its entry, or for the lease to lapse."""
        deadline = time.monotonic() + self.lease_ms / 1000
        pause = 0.002
        while time.monotonic() < deadline:
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)
            raw, holder = await backend.get_many([key, lease])
            if raw is not None:
                hit = valid(raw, generations)
                if hit is not MISSING:
                    return decode(hit[1])
            if holder is None:
                break
        return MISSING
