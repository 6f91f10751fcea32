"""When may this process believe what the shared backend says? One rule, kept here.

- A read may use the shared backend only while its breaker lets calls through, this process
  hears every other process's invalidations (when it listens at all: subscribed, and it has
  heard from Redis within `window` seconds), and every invalidation it issued has reached
  the backend or is covered by an epoch it has recorded.
- An invalidation that does not reach the backend (down, hung, read-only, out of memory, a
  pipeline cut short) is covered by a new *epoch*, written where the data is, before the
  mutation returns. Every key includes the epoch, so nothing cached under the old one is
  reachable, here or in any process that has read the new one. The new epoch is announced
  on the channel; when the announcement cannot be sent, the mutation returns only once every
  listener must have stopped trusting what it holds (it has not heard from Redis for
  `window` seconds, so it reads the epoch again before it trusts anything).
- A process reads the epoch when it starts, whenever it (re)subscribes or hears an
  announcement, before every read it serves from its fallback, and every poll period.
- While the shared backend may not be read, answers come from the origin. An in-process
  fallback may stand in only for a process that is alone: it cannot hear what other
  processes invalidate through a Redis that answers them and not this process.
- Every path reports each backend call's success or failure here; the breaker closes on the
  first success from any path, and what the fallback learned never outlives an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson

from cache.backends.base import Backend
from cache.backends.memory import MemoryBackend
from cache.breaker import CircuitBreaker
from cache.epoch import EpochStore, MemoryEpochs
from cache.exceptions import BackendError
from cache.keys import GENERATION_TTL_MS, new_generation
from cache.stats import CacheStats

T = TypeVar("T")
logger = logging.getLogger("vajra.cache")

SLACK = 0.02  # seconds added to `window` for a message in flight between processes


def _plain(body: dict[str, Any]) -> tuple[str | None, bytes]:
    return None, orjson.dumps(body)


async def _unconfirmed(_id: str | None, _receivers: int) -> None:
    return None


class Trust:
    """The shared backend behind its breaker, the fallback, and the epoch keys are built with."""

    def __init__(
        self,
        backend: Backend | None,
        *,
        epochs: EpochStore | None = None,
        breaker: CircuitBreaker | None = None,
        fallback: MemoryBackend | None = None,
        channel: str = "invalidations",
        epoch_key: str = "epoch",
        window: float = 0.5,
        poll: float = 1.0,
        on_epoch: Callable[[], None] = lambda: None,
        stats: CacheStats | None = None,
    ) -> None:
        self.backend = backend
        self.epochs: EpochStore = epochs or MemoryEpochs()
        self.breaker = breaker or CircuitBreaker()
        self.fallback = fallback
        self.channel = channel
        self.epoch_key = epoch_key
        self.window = window
        self.poll = poll
        self.on_epoch = on_epoch
        self.stats = stats or CacheStats()
        # Set when this process listens for invalidations: is it hearing them right now?
        self.listening: Callable[[], bool] | None = None
        # ...and how to make a message whose acknowledgements it counts, and wait for them.
        self.message: Callable[[dict[str, Any]], tuple[str | None, bytes]] = _plain
        self.confirm: Callable[[str | None, int], Awaitable[None]] = _unconfirmed
        self.epoch: str | None = None
        self.epoch_reads = 0
        self.unrecorded = False  # an invalidation neither delivered nor covered by an epoch
        self.unannounced = False  # a new epoch other processes have not been told of
        self._degraded = False
        self._last_failure = -math.inf
        self._last_warning = -math.inf
        self._refresh: asyncio.Future[str | None] | None = None  # the read under way
        self._next: asyncio.Future[str | None] | None = None  # the one after it
        self._known: str | None = None  # the last epoch read (kept while `epoch` is unknown)
        self._retrying = False
        self._poller: asyncio.Task[None] | None = None
        self._tickets = 0
        self._adopted = 0
        self._shared = _Reported(backend, self) if backend is not None else None

    # -- success and failure, from every path --------------------------------------------

    def succeeded(self) -> None:
        recovered = self.breaker.success()
        if recovered or self._degraded:
            if recovered:
                logger.warning("cache backend is back")
            # What the fallback learned while Redis was away, however briefly, must not
            # outlive the outage: other processes' invalidations never reached it.
            self._degraded = False
            self._forget()

    def _forget(self) -> None:
        if self.fallback is not None:
            self.fallback = MemoryBackend(self.fallback.max_entries)

    def failed(self, exc: BackendError) -> None:
        self.stats.backend_error()
        self.breaker.failure()
        self._degraded = True
        self._last_failure = now = time.monotonic()
        if now - self._last_warning > 10:  # at most one warning in ten seconds
            self._last_warning = now
            logger.warning("cache backend unavailable, serving from the origin: %s", exc)

    # -- the gates -----------------------------------------------------------------------

    def trusted(self) -> bool:
        """Whether a read may use the shared backend now, the breaker aside: the epoch is
        known, nothing is owed, and this process hears every invalidation."""
        if self._shared is None or self.unrecorded or self.epoch is None:
            return False
        return self.listening is None or self.listening()

    def reader(self) -> Backend | None:
        """The shared backend, if a read may use it now (and the breaker lets it try). Its
        calls report their success or failure here by themselves."""
        if not self.trusted():
            return None
        return self._shared if self.breaker.allow() else None

    def writer(self) -> Backend | None:
        """The shared backend, if the breaker lets a write try it now. Writes need no trust:
        whatever they store is keyed by the epoch and generations it was computed under."""
        if self._shared is None or not self.breaker.allow():
            return None
        return self._shared

    def prober(self) -> Backend | None:
        """The shared backend whatever the breaker says (health checks)."""
        return self._shared

    # -- the epoch -----------------------------------------------------------------------

    def current(self) -> str | None:
        """The epoch to build keys with, when known and not being read again."""
        return self.epoch if self._refresh is None and self._next is None else None

    async def ready(self) -> str | None:
        """The epoch to build keys with, waiting for the reads under way (or making one if
        it is unknown); None when it cannot be read (then nothing cached may be used)."""
        pending = self._next or self._refresh
        if pending is None:
            if self.epoch is not None:
                return self.epoch
            return await self.refresh()
        try:
            return await asyncio.shield(pending)
        except Exception:
            return None

    async def refresh(self) -> str | None:
        """Read the epoch from its store, in a read that begins after this call."""
        try:
            return await asyncio.shield(self._schedule())
        except Exception:
            return None

    def _schedule(self) -> asyncio.Future[str | None]:
        """A read that begins after now. Callers share reads: whoever asks while one is under
        way shares the next one, so nobody waits for more than two."""
        if self._refresh is None:
            self._refresh = asyncio.ensure_future(self._run(None))
            return self._refresh
        if self._next is None:
            self._next = asyncio.ensure_future(self._run(self._refresh))
        return self._next

    async def _run(self, after: asyncio.Future[str | None] | None) -> str | None:
        me = asyncio.current_task()
        if after is not None:
            await asyncio.wait([after])
            self._refresh, self._next = me, None  # now the read under way
        try:
            return await self.read()
        finally:
            if self._refresh is me:
                self._refresh = None

    async def read(self) -> str | None:
        """One read of the store, adopted unless a newer one already was. On failure the
        epoch is unknown (nothing cached is used) until a read succeeds; None then."""
        self._tickets += 1
        ticket = self._tickets
        self.epoch_reads += 1
        try:
            epoch = await self.epochs.read()
        except Exception as exc:
            logger.warning("cannot read the cache epoch, serving from the origin: %r", exc)
            if ticket > self._adopted:
                self._adopted = ticket
                self.epoch = None
            return None
        self._adopt(epoch, ticket)
        return self.epoch

    def _adopt(self, epoch: str, ticket: int) -> None:
        if ticket < self._adopted:
            return  # a read that began before one already adopted
        self._adopted = ticket
        if epoch != self._known:
            if self._known is not None:
                logger.info("cache epoch changed: nothing cached before it is served")
                self._forget()
                self.on_epoch()
            self._known = epoch
        self.epoch = epoch

    async def cover(self) -> None:
        """An invalidation did not reach the shared backend: a new epoch covers it, recorded
        where the data is and announced before this returns (see the module's rule)."""
        try:
            epoch = await self.epochs.bump()
        except Exception as exc:
            # Neither store took it: distrust the shared backend until one does.
            logger.error("cannot record a new cache epoch: %r", exc)
            self.unrecorded = True
            return
        self.unrecorded = False
        recorded = time.monotonic()
        self._tickets += 1  # after the bump: a read that began during it is older
        self._adopt(epoch, self._tickets)
        self.unannounced = True
        await self.announce(wait=True)
        if self.unannounced and self.poll > 0:
            # Nobody was told: a process that still hears Redis (this one alone may have
            # lost it) reads the epoch by its next poll. Return once that has passed.
            left = recorded + self.poll + self.window + 0.1 - time.monotonic()
            await asyncio.sleep(max(0.0, left))

    async def retry(self) -> None:
        """Settle what is owed, once at a time: an epoch not recorded, an announcement not
        sent."""
        if self._retrying:
            return
        self._retrying = True
        try:
            if self.unrecorded:
                await self.cover()
            elif self.unannounced and self.breaker.allow():
                await self.announce(wait=False)
        finally:
            self._retrying = False

    async def announce(self, *, wait: bool) -> None:
        """Tell every process to read the epoch again. Sent whatever the breaker says, and
        (when asked to wait) tried again until it is sent or `window` has passed since the
        first failure: a failure of this process alone then does not keep the others in the
        dark, and if Redis failed for everyone, every listener has stopped trusting by then."""
        if self.backend is None:
            self.unannounced = False
            return
        deadline = math.inf
        id_, message = self.message({"epoch": True})
        while True:
            try:
                receivers = await self.backend.publish(self.channel, message)
            except BackendError as exc:
                self.failed(exc)
                now = time.monotonic()
                deadline = min(deadline, now + self.window + SLACK)
                if not wait or now >= deadline:
                    await self.confirm(id_, 0)  # forgets it
                    return
                await asyncio.sleep(min(0.02, deadline - now))
                continue
            break
        self.unannounced = False
        self.succeeded()
        if wait:
            await self.confirm(id_, receivers)
        else:
            await self.confirm(id_, 0)
        # For processes that read Redis without listening: the global generation too.
        with contextlib.suppress(BackendError):
            await self.backend.set_many([(self.epoch_key, new_generation(), GENERATION_TTL_MS)])

    def start_polling(self) -> None:
        """Read the epoch every `poll` seconds (needs a running event loop)."""
        if self._poller is None and self.poll > 0:
            self._poller = asyncio.create_task(self._poll(), name="cache-epoch-poll")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            await self.read()
            await self.retry()

    async def close(self) -> None:
        for pending in (self._poller, self._next, self._refresh):
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending

    def heard_announcement(self) -> None:
        """Another process changed the epoch: read it before anything else is served
        (`current()` is None from now until the read is done)."""
        self._schedule()


class _Reported(Backend):
    """The shared backend as every tier sees it: each call reports to the trust."""

    def __init__(self, inner: Backend, trust: Trust) -> None:
        self.inner = inner
        self.trust = trust
        self.name = inner.name

    async def _report(self, call: Awaitable[T]) -> T:
        try:
            result = await call
        except BackendError as exc:
            self.trust.failed(exc)
            raise
        except Exception as exc:
            # A driver's bug (redis-py's cluster client has raised TypeError and the like
            # mid-failover) is still only a failed call: never a failed request.
            logger.error("cache backend raised %r, counted as a failure", exc, exc_info=exc)
            error = BackendError(f"unexpected {type(exc).__name__}: {exc}")
            self.trust.failed(error)
            raise error from exc
        self.trust.succeeded()
        return result

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._report(self.inner.get_many(keys))

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes, int]],
        release: Sequence[str] = (),
        publish: tuple[str, bytes] | None = None,
    ) -> int:
        return await self._report(self.inner.set_many(items, release, publish))

    async def set_if_absent_get(self, items: Sequence[tuple[str, bytes, int]]) -> list[bytes]:
        return await self._report(self.inner.set_if_absent_get(items))

    async def acquire_many(self, items: Sequence[tuple[str, bytes, int]]) -> list[bool]:
        return await self._report(self.inner.acquire_many(items))

    async def delete(self, keys: Sequence[str]) -> None:
        await self._report(self.inner.delete(keys))

    async def clear(self, pattern: str) -> int:
        return await self._report(self.inner.clear(pattern))

    async def count(self, prefix: str, limit: int) -> int:
        return await self._report(self.inner.count(prefix, limit))

    async def ping(self) -> None:
        await self._report(self.inner.ping())

    async def publish(self, channel: str, message: bytes) -> int:
        return await self._report(self.inner.publish(channel, message))
