"""Dataloader-style batching: every call made in one event-loop tick becomes one backend call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class TickBatcher(Generic[T, R]):
    """Queue items; at the end of the tick hand them all to `flush` at once.

    `flush` receives the items in arrival order and returns one result per item. It should
    not raise: an exception is handed to every caller of that batch.
    """

    def __init__(self, flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]]) -> None:
        self._flush = flush
        self._items: list[T] = []
        self._futures: list[asyncio.Future[R]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, item: T) -> asyncio.Future[R]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        if not self._items:
            # call_soon runs after every callback already queued for this tick: all the
            # resolvers graphql-core started together have registered their keys by then.
            loop.call_soon(self._dispatch)
        self._items.append(item)
        self._futures.append(future)
        return future

    def _dispatch(self) -> None:
        items, futures = self._items, self._futures
        self._items, self._futures = [], []
        task = asyncio.ensure_future(self._run(items, futures))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, items: list[T], futures: list[asyncio.Future[R]]) -> None:
        try:
            results = await self._flush(items)
        except BaseException as exc:
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for future, result in zip(futures, results, strict=True):
            if not future.done():
                future.set_result(result)
