"""A GraphQL caching layer for Strawberry and Redis: per-field policies, tag generations,
dataloader-style batching, single-flight, and a circuit breaker so the cache never fails a
request. It knows nothing about the schema it serves."""

from cache.backends import Backend, MemoryBackend, RedisBackend
from cache.breaker import CircuitBreaker
from cache.exceptions import BackendError, CacheError, PolicyError
from cache.extension import CacheControl, CacheExtension, cache_control
from cache.layer import Cache
from cache.policy import CachePolicy, Scope, daily

__all__ = [
    "Backend",
    "BackendError",
    "Cache",
    "CacheControl",
    "CacheError",
    "CacheExtension",
    "CachePolicy",
    "CircuitBreaker",
    "MemoryBackend",
    "PolicyError",
    "RedisBackend",
    "Scope",
    "cache_control",
    "daily",
]
