"""Which node is the master now, as the Sentinels say, asked often enough to act on.

`SENTINEL FAILOVER` leaves the old master a master for several seconds after the Sentinels
name the new one (measured: 10 s on Redis 7.0, until they reconfigure it). Writes there are
accepted and then lost, and a pooled connection never notices: a ROLE check when it connects
is not enough. So every call checks, when it takes a connection from the pool, that the
connection belongs to the master confirmed now (`MasterWatch.current()`), and the cache
trusts a node only while a recent poll confirmed it.

A master counts as confirmed when a majority of the configured Sentinels name it and no
Sentinel that answers names another. Two majorities share a Sentinel, and a Sentinel's answer
only moves forward (to the newer configuration), so a poll that confirmed the old master
began before any poll that confirmed the new one ended. That is what lets a process that
moved to the new master bound how long any other can still trust the old one: `fresh_for`
seconds after its own move (`changed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from redis import asyncio as aioredis

from cache.backends.redis import ERRORS

logger = logging.getLogger("vajra.cache")

Address = tuple[str, int]


class MasterWatch:
    """Asks every Sentinel in `sentinels` for the master of `service` every `period` seconds
    (once started, in a task of its own) and whenever asked to (`poll`)."""

    def __init__(
        self,
        sentinels: Sequence[aioredis.Redis],
        service: str,
        *,
        period: float = 0.25,
        fresh_for: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sentinels = list(sentinels)
        self.service = service
        self.period = period
        self.fresh_for = fresh_for
        self.clock = clock
        self.majority = len(self.sentinels) // 2 + 1
        self.master: Address | None = None  # the last master confirmed
        self.term = 0  # changes with `master`
        self.confirmed = -math.inf  # when the last poll that confirmed `master` began
        self.changed = -math.inf  # when the poll that first confirmed `master` ended
        self.polls = 0
        self._task: asyncio.Task[None] | None = None

    def current(self) -> int | None:
        """The term of the master confirmed within `fresh_for` seconds; None if there is none
        (then nothing may be read from, or written to, any node)."""
        if self.master is None or self.clock() - self.confirmed >= self.fresh_for:
            return None
        return self.term

    def settled_at(self) -> float:
        """When every other process has stopped trusting the master before this one: a
        mutation that wrote to this one returns no earlier."""
        return self.changed + self.fresh_for

    async def poll(self) -> None:
        """Ask every Sentinel now, in parallel; adopt the master if the answers confirm one."""
        self.polls += 1
        began = self.clock()
        answers = await asyncio.gather(*(self._ask(s) for s in self.sentinels))
        ended = self.clock()
        votes = Counter(a for a in answers if a is not None)
        if len(votes) != 1:
            return  # nobody answered, or the Sentinels disagree (a failover under way)
        ((master, count),) = votes.items()
        if count < self.majority:
            return
        if master != self.master:
            self.master, self.term, self.changed = master, self.term + 1, ended
        self.confirmed = max(self.confirmed, began)

    async def _ask(self, sentinel: aioredis.Redis) -> Address | None:
        try:
            reply: Any = await sentinel.execute_command(  # type: ignore[no-untyped-call]
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
            )
        except ERRORS:
            return None
        if not reply:
            return None
        host, port = reply
        return (host.decode() if isinstance(host, bytes) else str(host)), int(port)

    def start(self) -> None:
        """Poll every `period` seconds from now on, in this event loop (needs a running one;
        a task left in a loop that has ended since is replaced)."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._run(), name="cache-sentinel-watch")

    async def _run(self) -> None:
        warned = -math.inf
        while True:
            try:
                await self.poll()
            except Exception:  # never the end of the watch: the next poll may do
                logger.exception("asking the Sentinels failed")
            if self.current() is None and self.clock() - warned > 10:
                warned = self.clock()
                logger.warning(
                    "no master of %r confirmed by the Sentinels: the cache is not used",
                    self.service,
                )
            await asyncio.sleep(self.period)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for sentinel in self.sentinels:
            await sentinel.aclose()
