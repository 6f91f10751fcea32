"""Where entries and tag generations live: Redis (one node, the master Sentinel names, or a
cluster), or this process's memory."""

from cache.backends.base import Backend
from cache.backends.cluster import ClusterBackend
from cache.backends.memory import MemoryBackend
from cache.backends.redis import RedisBackend
from cache.backends.sentinel import SentinelBackend
from cache.backends.urls import ClusterUrl, SentinelUrl, SingleUrl, parse_redis_url

__all__ = [
    "Backend",
    "ClusterBackend",
    "ClusterUrl",
    "MemoryBackend",
    "RedisBackend",
    "SentinelBackend",
    "SentinelUrl",
    "SingleUrl",
    "backend_for",
    "parse_redis_url",
]


def backend_for(url: str, *, timeout: float = 0.1, max_connections: int = 64) -> Backend:
    """The backend a Redis URL names (see `cache.backends.urls` for the forms); ValueError,
    before anything connects, for a form that is not supported."""
    target = parse_redis_url(url)
    if isinstance(target, SentinelUrl):
        return SentinelBackend(url, timeout=timeout, max_connections=max_connections)
    if isinstance(target, ClusterUrl):
        return ClusterBackend(url, timeout=timeout, max_connections=max_connections)
    return RedisBackend(url, timeout=timeout, max_connections=max_connections)
