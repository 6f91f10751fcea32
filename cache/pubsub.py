"""Invalidations between processes: each publishes the tags it bumps, every process listens
and drops its local entries for them. A process that is not hearing the channel right now
trusts nothing local, and nothing in Redis either.

"Hearing" is proven, not assumed: the listener pings Redis every `window / 5` seconds and is
live only while it has heard from Redis (a pong or a message) within `window` seconds. A
longer silence, even one that ends without an error (Redis paused, then resumed), counts as
a loss: messages from before it may be missing, so the epoch is read again before anything
is trusted (`on_ready`). A process whose invalidation could not be announced waits out
`window` before its mutation returns, so every listener has stopped trusting by then.

A mutation returns only once every listener has acted on its message: each message carries
an id and this process's reply channel, every listener acknowledges it there after dropping
what it names, and the sender waits for as many acknowledgements as Redis counted receivers,
or for `window` (by then a listener that did not answer has not heard from Redis since before
the message, so it trusts nothing: what it hears next, it hears after the message).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from redis import asyncio as aioredis
from redis.exceptions import RedisError

logger = logging.getLogger("vajra.cache")

RECONNECT_AFTER = 4  # windows of silence before the connection is given up


class ClientFactory(Protocol):
    """Makes a new client on the node that takes writes now (after a failover, the new
    master; on a cluster, the master of the channel's slot): `RedisBackend.pubsub_client`."""

    async def __call__(
        self, channel: str, *, read_timeout: float, connect_timeout: float
    ) -> aioredis.Redis: ...


class Subscriber:
    """Listens on `channel` in a task of its own, reconnecting with backoff, each time with a
    new client from `connect`.

    Messages are `{"t": [tags]}` (`on_tags`) or `{"epoch": true}`: another process changed
    the epoch (`on_epoch`), each with the `id` and reply channel `r` that `message()` adds;
    `ack(reply, id)` sends the acknowledgement. `on_ready` runs after every (re)subscription
    and every silence longer than `window`, before the listener counts as live; it returns
    False when it could not make the process ready (then the listener tries again).

    `sharded`: SSUBSCRIBE instead of SUBSCRIBE (Redis Cluster, where both channels share
    one slot). Losing the slot (a failover, a reshard) unsubscribes us: that is a loss."""

    def __init__(
        self,
        connect: ClientFactory,
        channel: str,
        *,
        on_tags: Callable[[list[str]], None],
        on_epoch: Callable[[], None],
        on_ready: Callable[[], Awaitable[bool]],
        on_lost: Callable[[], None],
        ack: Callable[[str, bytes], Awaitable[None]],
        window: float = 0.5,
        sharded: bool = False,
        topology: Callable[[], int | None] = lambda: 0,
    ) -> None:
        self._connect = connect
        self.sharded = sharded
        self.channel = channel
        self._on_tags = on_tags
        self._on_epoch = on_epoch
        self._topology = topology
        self._term: int | None = None  # the topology this listener subscribed under
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._ack = ack
        self.reply = f"{channel}:ack:{secrets.token_hex(8)}"
        self._waiting: dict[str, list[Any]] = {}  # id -> [acks, needed, event]
        self._acks_out: set[asyncio.Task[None]] = set()
        self.unconfirmed = 0  # messages some listener never acknowledged within the window
        self.window = window
        self.heartbeat = window / 5
        self._task: asyncio.Task[None] | None = None
        self._live = False
        self._heard = -float("inf")
        self.subscribed = asyncio.Event()

    def live(self) -> bool:
        """Subscribed, ready, heard from Redis within `window` seconds, and on the node that
        takes writes now (a listener on a demoted master hears nothing more)."""
        return (
            self._live
            and time.monotonic() - self._heard < self.window
            and self._topology() == self._term
        )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="cache-invalidations")

    def message(self, body: dict[str, Any]) -> tuple[str | None, bytes]:
        """`body` as a message whose acknowledgements this listener will count: its id and
        bytes. Call `confirmed` with the id once it is published, or `forget` it."""
        id_ = secrets.token_hex(8)
        self._waiting[id_] = [0, None, asyncio.Event()]
        return id_, orjson.dumps({**body, "id": id_, "r": self.reply})

    async def confirmed(self, id_: str | None, receivers: int) -> None:
        """Wait until `receivers` listeners have acted on message `id_`, or until no listener
        that has not can still be trusting (see the module's docstring). With 0 receivers,
        nothing was sent: just forget the message."""
        if id_ is None:
            return
        waiting = self._waiting.get(id_)
        try:
            if waiting is None:
                return
            waiting[1] = receivers
            if waiting[0] < receivers:
                try:
                    await asyncio.wait_for(waiting[2].wait(), self.window + 0.02)
                except TimeoutError:
                    self.unconfirmed += 1
        finally:
            self._waiting.pop(id_, None)

    def _acked(self, id_: str) -> None:
        waiting = self._waiting.get(id_)
        if waiting is not None:
            waiting[0] += 1
            if waiting[1] is not None and waiting[0] >= waiting[1]:
                waiting[2].set()

    async def stop(self) -> None:
        if self._task is None:
            return
        task, self._task = self._task, None
        # Cancelled until it is done: a cancellation that lands while redis-py waits for a
        # reply is sometimes swallowed there, and the listener would go on listening.
        while not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=0.1)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        pause = 0.05
        while True:
            client: aioredis.Redis | None = None
            pubsub: Any = None
            try:
                self._term = self._topology()
                client = await self._connect(
                    self.channel, read_timeout=RECONNECT_AFTER * self.window, connect_timeout=0.5
                )
                pubsub = client.pubsub()
                await self._subscribe(pubsub)
                pause = 0.05
                await self._listen(pubsub)
            except Exception as exc:
                if not isinstance(exc, RedisError | OSError | ValueError):
                    # A bug, here or in the driver: logged, and never the listener's end.
                    logger.error("cache invalidation listener failed: %r", exc, exc_info=exc)
                elif self.subscribed.is_set():
                    logger.warning("cache invalidation channel lost: %r", exc)
                self._lose()
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
            finally:
                with contextlib.suppress(Exception):
                    if pubsub is not None:
                        await pubsub.aclose()
                    if client is not None:
                        await client.aclose()

    async def _subscribe(self, pubsub: Any) -> None:
        if self.sharded:
            await pubsub.ssubscribe(self.channel, self.reply)
        else:
            await pubsub.subscribe(self.channel, self.reply)
        deadline = time.monotonic() + RECONNECT_AFTER * self.window
        confirmed = 0
        while confirmed < 2:  # only once both are confirmed does any message count
            message = await pubsub.get_message(timeout=self.heartbeat)
            if message is not None and message["type"] in ("subscribe", "ssubscribe"):
                confirmed += 1
            if time.monotonic() > deadline:
                raise TimeoutError("no confirmation of the subscription")
        self._heard = time.monotonic()
        await self._ready()

    async def _ready(self) -> None:
        if not await self._on_ready():
            raise ConnectionError("could not read the epoch after subscribing")
        self._live = True
        self.subscribed.set()

    async def _listen(self, pubsub: Any) -> None:
        pinged = 0.0
        while True:
            topology = self._topology()
            if topology is not None and topology != self._term:
                raise ConnectionError("the master changed: listen on the new one")
            now = time.monotonic()
            if now - pinged >= self.heartbeat:
                await pubsub.ping()
                pinged = now
            message = await pubsub.get_message(timeout=self.heartbeat)
            now = time.monotonic()
            if message is None:
                if now - self._heard > RECONNECT_AFTER * self.window:
                    raise TimeoutError(f"nothing heard from Redis for {now - self._heard:.2f} s")
                continue
            if now - self._heard >= self.window:
                # A silence, now over: whatever happened meanwhile, read the epoch again.
                self._lose()
                self._heard = now
                await self._ready()
            self._heard = now
            kind = message["type"]
            if kind in ("message", "smessage"):
                self._dispatch(message["channel"], orjson.loads(message["data"]))
            elif kind in ("unsubscribe", "sunsubscribe"):
                # The server dropped us (a shard channel's slot moved): listen elsewhere.
                raise ConnectionError(f"unsubscribed from {message['channel']!r} by the server")

    def _dispatch(self, channel: bytes, payload: Any) -> None:
        if not isinstance(payload, dict):
            return
        if channel.decode() == self.reply:
            self._acked(str(payload.get("ack")))
            return
        if isinstance(payload.get("t"), list):
            self._on_tags([str(tag) for tag in payload["t"]])
        elif "epoch" in payload:
            self._on_epoch()
        reply, id_ = payload.get("r"), payload.get("id")
        if isinstance(reply, str) and isinstance(id_, str):
            # Acted on: say so (in the background, the listener never waits on it).
            task = asyncio.ensure_future(self._ack(reply, orjson.dumps({"ack": id_})))
            self._acks_out.add(task)
            task.add_done_callback(self._acks_out.discard)

    def _lose(self) -> None:
        self._live = False
        self.subscribed.clear()
        self._on_lost()
