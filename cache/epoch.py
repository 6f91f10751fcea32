"""The cache epoch: one value, kept where the data is, that every cache key includes.

The cache cannot know what happened to the data while it was not told: a process that
died before its invalidation reached Redis, a bulk load, a restore, a second database
behind the same Redis. So the data's own store carries an epoch; a new epoch makes every
entry cached before it unreachable, in every process, once that process has read it.
"""

from __future__ import annotations

import secrets
from typing import Protocol


def new_epoch() -> str:
    """Random, never a counter: two databases, or a restored one, never share an epoch."""
    return secrets.token_hex(8)


class EpochStore(Protocol):
    """Where the epoch lives. Both calls may raise anything: the cache then trusts nothing."""

    async def read(self) -> str:
        """The current epoch (created on first use)."""

    async def bump(self) -> str:
        """Replace the epoch with a new one, durably; return it."""


class MemoryEpochs:
    """An epoch in this process only: right for one process, or for processes in a test that
    share this object. A real deployment keeps it in its database. Every instance starts at
    the same epoch, so that caches without a store share entries until one of them bumps."""

    def __init__(self, epoch: str = "0") -> None:
        self.epoch = epoch
        self.reads = 0

    async def read(self) -> str:
        self.reads += 1
        return self.epoch

    async def bump(self) -> str:
        self.epoch = new_epoch()
        return self.epoch
