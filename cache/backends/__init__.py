"""Where entries and tag generations live: Redis, or this process's memory."""

from cache.backends.base import Backend
from cache.backends.memory import MemoryBackend
from cache.backends.redis import RedisBackend

__all__ = ["Backend", "MemoryBackend", "RedisBackend"]
