"""The cache itself: look up, coalesce, compute, store and invalidate, never failing a request.

An entry is stored with the generations of the tags it depends on, as read *before* its
value was computed. It is served only while every one of those tags still has that
generation; an invalidation gives each tag a new random generation. So a slow miss that read
the database before a mutation can store its result, but nobody will ever be served it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cache.backends.base import Backend
from cache.backends.memory import MemoryBackend
from cache.backends.redis import RedisBackend
from cache.breaker import CircuitBreaker
from cache.codec import Decoder
from cache.epoch import EpochStore
from cache.exceptions import BackendError
from cache.flight import MISSING, Flights, valid
from cache.keys import GENERATION_TTL_MS, KeySpace, canonical_args, new_generation
from cache.local import LocalTier
from cache.policy import CachePolicy, Scope
from cache.pubsub import Subscriber
from cache.refresh import Hot, Refresher
from cache.revalidate import Revalidator
from cache.shared import SharedCalls
from cache.stats import CacheStats
from cache.trust import Trust

logger = logging.getLogger("vajra.cache")

KEY_COUNT_EVERY = 5.0


@dataclass(frozen=True, slots=True)
class Lookup:
    status: str  # HIT, MISS (computed), COALESCED (waited for another's computation), BYPASS
    key: str | None
    age: float | None
    ttl: float = 0.0
    # The tags the value depends on and the shared backend's generations it was read or
    # computed under; None when it came from elsewhere (bypass, fallback), so that nothing
    # built on it (a whole-operation entry) is ever stored.
    tags: tuple[str, ...] = ()
    generations: tuple[bytes, ...] | None = None


class Cache:
    """One per process. `backend` is shared (Redis); while it may not be read, answers come
    from the origin, or from `fallback` for a process that is alone; `epochs` keeps the epoch
    where the data is (see `cache.trust` for when Redis is trusted). `poll` is how often the
    epoch is read again (out-of-band writes are seen within it). `refresh_entries` hot entries
    of refreshable fields are recomputed after a write, rounds `refresh_every` seconds apart
    (see `cache.refresh`); 0 entries turns refresh off."""

    def __init__(
        self,
        backend: Backend | None,
        *,
        namespace: str = "vajra",
        schema_version: str = "1",
        enabled: bool = True,
        fallback: MemoryBackend | None = None,
        breaker: CircuitBreaker | None = None,
        epochs: EpochStore | None = None,
        poll: float = 1.0,
        window: float = 0.5,
        max_age: dict[str, int] | None = None,
        lease_ms: int = 5_000,
        local_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
        refresh_entries: int = 256,
        refresh_every: float = 0.5,
    ) -> None:
        self.backend = backend
        self.enabled = enabled
        self.keys = KeySpace(namespace, schema_version)
        if isinstance(backend, RedisBackend):
            backend.guard_restarts(
                self.keys.run_marker, self.keys.generation("*"), new_generation, GENERATION_TTL_MS
            )
        self.channel = self.keys.channel
        self.stats = CacheStats()
        self.trust = Trust(
            backend,
            epochs=epochs,
            breaker=breaker,
            fallback=fallback,
            channel=self.channel,
            epoch_key=self.keys.generation("*"),
            window=window,
            poll=poll,
            on_epoch=lambda: self.drop_local(["*"]),
            stats=self.stats,
        )
        self.breaker = self.trust.breaker
        self.max_age = dict(max_age or {})
        self.lease_ms = lease_ms
        self.clock = clock
        # Trusted only once subscribed to the channel (a cache without Redis is alone).
        self.local = LocalTier(local_bytes, clock)
        if isinstance(backend, RedisBackend):
            self.local.distrust()
        self.local_epoch = 0
        self._subscriber: Subscriber | None = None
        self._key_count = (0, -float("inf"))  # (count, when)
        self.shared = SharedCalls(self.trust)
        self.flights = Flights(
            self.keys, lease_ms, clock, self.shared.writes.submit, self.shared.leases.submit
        )
        self.revalidator = Revalidator(self.flights)
        self.refresher = Refresher(
            self._refresh,
            capacity=refresh_entries,
            every=refresh_every,
            counts=self.stats.refresh,
        )

    @property
    def fallback(self) -> MemoryBackend | None:
        return self.trust.fallback

    async def epoch(self) -> str | None:
        """The epoch keys are built with now; None while it cannot be known."""
        return self.trust.current() or await self.trust.ready()

    # -- the read path ----------------------------------------------------------------------

    async def resolve(
        self,
        policy: CachePolicy,
        coordinate: str,
        args: dict[str, Any],
        compute: Callable[[], Awaitable[Any]],
        decode: Decoder,
        identity: str | None = None,
        *,
        refreshing: bool = False,
    ) -> tuple[Any, Lookup]:
        """The value of one field: from the cache when valid, else computed once and stored.

        `refreshing`: a refresh after a write, not a read: it is not counted, and it computes
        only what it can store (a valid entry, or any reason to bypass, leaves it idle)."""
        if not self.enabled or (policy.scope is Scope.PRIVATE and identity is None):
            return await self._bypass(coordinate, compute, refreshing)
        max_age = ttl = float(self.max_age.get(policy.group, policy.max_age))
        bucket, left = "", float("inf")
        if policy.boundary is not None:
            bucket, left = policy.boundary(self.clock())
            ttl = min(ttl, left)
        if ttl < 0.001:
            return await self._bypass(coordinate, compute, refreshing)
        # Stored `swr` seconds past its max age to be served while revalidated, never past
        # its boundary (the next period's key differs anyway).
        kept = min(max_age + policy.swr, left) if policy.swr else ttl
        try:
            encoded_args = canonical_args(args)
        except (TypeError, ValueError):  # arguments with no canonical form are not cached
            return await self._bypass(coordinate, compute, refreshing)
        epoch = self.trust.current() or await self.trust.ready()
        if epoch is None:  # nothing cached can be trusted, nor stored
            return await self._bypass(coordinate, compute, refreshing)
        key = self.keys.entry(
            policy.group,
            coordinate,
            encoded_args,
            bucket,
            identity if policy.scope is Scope.PRIVATE else None,
            epoch,
        )
        tags = policy.dependencies(args)
        # Tracked once served from (or stored in) the cache: a failing or uncacheable read
        # is not kept to be refreshed.
        hot = policy.refresh and not refreshing
        generation_keys = [self.keys.generation(tag) for tag in tags]
        read = await self.shared.reads.submit([key, *generation_keys])
        if read.epoch != epoch or read.backend is None:
            # The epoch changed while we read (what we read may predate it), or nothing
            # can be read: compute, and store nothing.
            if refreshing:
                return None, Lookup("BYPASS", key, None)
            self.stats.record(coordinate, "MISS")
            return await compute(), Lookup("MISS", key, None)
        raw, generations = read.values[0], read.values[1:]
        if raw is not None and None not in generations:
            hit = valid(raw, generations)  # type: ignore[arg-type]
            stale = False
            if hit is not MISSING and policy.swr:
                age = self.clock() - hit[0]
                stale = age >= max_age
                if stale and (refreshing or age >= max_age + policy.swr):
                    hit = MISSING  # past its window: an ordinary miss
            if hit is not MISSING:
                created, value = hit
                try:
                    value = decode(value)
                except Exception:  # an entry we cannot read is a miss, never an error
                    logger.warning("cache entry %s could not be decoded", key, exc_info=True)
                else:
                    if refreshing:  # already fresh (another process refreshed it)
                        return value, Lookup("HIT", key, None)
                    self.stats.record(coordinate, "HIT")
                    if stale:
                        # Its generations are current: no write made it stale, only time.
                        # Served, never built upon (no generations: no operation entry).
                        shared = read.backend if read.shared else None
                        current = tuple(g for g in generations if g is not None)
                        self.revalidator.start(
                            shared, key, current, int(kept * 1000), compute, decode
                        )
                        if hot:
                            self.refresher.seen(
                                policy, coordinate, encoded_args, args, compute, decode
                            )
                        age = max(0.0, self.clock() - created)
                        return value, Lookup("STALE", key, age)
                    logger.debug("cache hit %s", key)
                    if hot:
                        self.refresher.seen(policy, coordinate, encoded_args, args, compute, decode)
                    return value, Lookup(
                        "HIT",
                        key,
                        max(0.0, self.clock() - created),
                        ttl,
                        tags,
                        tuple(generations) if read.shared else None,  # type: ignore[arg-type]
                    )
        logger.debug("cache miss %s", key)
        try:
            settled = await self.shared.settle_generations(
                read.backend, generation_keys, generations
            )
        except BackendError:
            if refreshing:
                return None, Lookup("BYPASS", key, None)
            self.stats.record(coordinate, "MISS")
            return await compute(), Lookup("MISS", key, None)
        # A reader that finds the same computation running waits for it: COALESCED.
        status = "COALESCED" if self.flights.running(key, settled) else "MISS"
        if not refreshing:
            self.stats.record(coordinate, status)
        shared = read.backend if read.shared else None
        value = await self.flights.run(shared, key, settled, int(kept * 1000), compute, decode)
        if hot:
            self.refresher.seen(policy, coordinate, encoded_args, args, compute, decode)
        return value, Lookup(status, key, None, ttl, tags, settled if read.shared else None)

    async def _bypass(
        self, coordinate: str, compute: Callable[[], Awaitable[Any]], refreshing: bool = False
    ) -> tuple[Any, Lookup]:
        if refreshing:  # nothing would be stored: computing would be wasted
            return None, Lookup("BYPASS", None, None)
        self.stats.record(coordinate, "BYPASS")
        return await compute(), Lookup("BYPASS", None, None)

    # -- the write path ---------------------------------------------------------------------

    async def invalidate(self, tags: Iterable[str], *, refresh: bool = True) -> None:
        """Give each tag a new generation: every entry depending on one is stale from now on,
        here at once, in other processes when they hear of it. Then (unless `refresh` is off)
        the hot entries they made stale are recomputed in the background."""
        unique = list(dict.fromkeys(tags))
        if not unique:
            return
        self.drop_local(unique)
        try:
            # Shielded: a mutation whose client went away still invalidates what it changed.
            await asyncio.shield(self._bump(unique))
        finally:
            # Again once the new generations are in place: a reader that ran while they were
            # on their way read the old ones and may have put what it built in the local tier.
            self.drop_local(unique)
        # In the background, after the mutation returns: it waits for no recomputation, and a
        # reader arriving before the refresh is done joins its flight.
        if refresh:
            self.refresher.schedule(unique)

    async def _refresh(self, hot: Hot) -> None:
        await self.resolve(
            hot.policy, hot.coordinate, hot.args, hot.compute, hot.decode, refreshing=True
        )

    async def _bump(self, unique: list[str]) -> None:
        items = [(self.keys.generation(tag), new_generation(), GENERATION_TTL_MS) for tag in unique]
        for tag in unique:
            self.stats.invalidated(tag)
        if self.fallback is not None:
            await self.fallback.set_many(items)
        backend = self.trust.writer()
        if backend is not None:
            id_, message = self.trust.message({"t": unique})
            try:
                receivers = await backend.set_many(items, publish=(self.channel, message))
            except BackendError:
                await self.trust.confirm(id_, 0)  # forgets it
            else:
                # Return only once every process has dropped what it held of these tags.
                await self.trust.confirm(id_, receivers)
                return
            # Maybe partly applied: the epoch covers all of it.
        self.stats.lost_invalidations += 1
        await self.trust.cover()

    async def reset(self) -> None:
        """Make everything cached so far stale, in every process: a new epoch, recorded where
        the data is and announced (after a bulk load, a restore or a manual write)."""
        self.stats.invalidated("*")
        self.drop_local(["*"])
        await self.trust.cover()

    async def clear(self, group: str | None = None) -> int:
        """Drop every entry of this namespace, or of one group (admin). Returns how many went.

        The invalidation alone makes them unreachable, in O(1); the scan frees their memory.
        Nothing is refreshed: an admin clearing the cache wants it empty, and the next readers
        recompute."""
        await self.invalidate([group or "*"], refresh=False)
        pattern = self.keys.entries_of(group)
        removed = await self.fallback.clear(pattern) if self.fallback is not None else 0
        backend = self.trust.writer()
        if backend is not None:
            try:
                removed = await backend.clear(pattern)
                if group is None:
                    removed += await backend.clear(self.keys.operations())
            except BackendError:
                pass
        return removed

    # -- status -----------------------------------------------------------------------------

    async def status(self) -> str:
        """connected, disconnected or disabled. A PING whatever the breaker says: an answer
        closes it, as any successful call does."""
        backend = self.trust.prober()
        if not self.enabled or backend is None:
            return "disabled"
        try:
            await backend.ping()
        except BackendError:
            return "disconnected"
        await self.trust.retry()
        return "connected"

    async def total_keys(self, limit: int = 1_000_000) -> int:
        """Keys of this namespace, up to `limit`: a SCAN, so counted at most every
        KEY_COUNT_EVERY seconds whoever asks (the stats are public)."""
        counted, at = self._key_count
        if time.monotonic() - at < KEY_COUNT_EVERY:
            return counted
        counted = 0
        backend = self.trust.writer()
        if backend is not None:
            with contextlib.suppress(BackendError):
                counted = await backend.count(self.keys.prefix, limit)
        elif self.fallback is not None:
            counted = await self.fallback.count(self.keys.prefix, limit)
        self._key_count = (counted, time.monotonic())
        return counted

    # -- the local tier and the invalidation channel ----------------------------------------

    def drop_local(self, tags: Sequence[str]) -> None:
        """Forget local entries depending on `tags`; entries being computed now are not kept."""
        self.local_epoch += 1
        self.local.invalidate(tags)

    def _lost_channel(self) -> None:
        self.local_epoch += 1
        self.local.distrust()

    async def _subscribed(self) -> bool:
        """(Re)subscribed: messages may have been missed, so read the epoch before the local
        tier is trusted again."""
        if await self.trust.refresh() is None:
            return False
        self.local_epoch += 1
        self.local.trust()
        return True

    async def start(self) -> None:
        """Read the epoch, listen for other processes' invalidations and poll the epoch
        (needs a running event loop)."""
        await self.trust.ready()
        if not self.enabled:
            return
        if isinstance(self.backend, RedisBackend) and self._subscriber is None:
            self._subscriber = Subscriber(
                self.backend.pubsub_client,
                self.channel,
                on_tags=self.drop_local,
                on_epoch=self._heard_epoch,
                on_ready=self._subscribed,
                on_lost=self._lost_channel,
                ack=self._ack,
                window=self.trust.window,
                sharded=self.backend.sharded_pubsub,
                topology=self.backend.topology,
            )
            self.trust.listening = self.local.live = self._subscriber.live
            self.trust.message = self._subscriber.message
            self.trust.confirm = self._subscriber.confirmed
            self._subscriber.start()
        self.trust.start_polling()

    async def _ack(self, reply: str, message: bytes) -> None:
        if self.backend is not None:
            with contextlib.suppress(BackendError):
                await self.backend.publish(reply, message)

    def _heard_epoch(self) -> None:
        self.drop_local(["*"])
        self.trust.heard_announcement()

    async def close(self) -> None:
        await self.refresher.close()
        await self.revalidator.close()
        if self._subscriber is not None:
            await self._subscriber.stop()
        await self.trust.close()
        if self.backend is not None:
            await self.backend.close()
