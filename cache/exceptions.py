"""The cache's errors, factored out to avoid import loops.

CacheError
  ├── BackendError      a backend (Redis) failed or timed out; the layer treats it as a miss
  └── PolicyError       a cache policy or pattern is not valid; raised at declaration or by admin calls
"""

from __future__ import annotations


class CacheError(Exception):
    """Root of every error the cache raises."""


class BackendError(CacheError):
    """A backend call failed; the caller falls back, the request never fails."""


class PolicyError(CacheError, ValueError):
    """A declaration or an admin request the cache cannot honour."""
