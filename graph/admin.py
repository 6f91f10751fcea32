"""Cache administration for this schema: the families it knows, stats and clearing.

Counts are public; the tags invalidated are the admin's, since they name what changed
(threat ids, sources, categories) and when."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.types import Info

from cache import Cache
from graph.context import Context, Role
from graph.errors import truncated
from resolvers.errors import InvalidInput

FAMILIES = ("stats", "threats", "charts")


@strawberry.type(description="What clearCache removed.")
class ClearResult:
    cleared: int = strawberry.field(description="Entries removed from Redis.")
    families: list[str] = strawberry.field(description="The families that were cleared.")


@strawberry.type(
    description="Cache lookups of one field coordinate (or '(operation)' for whole operations) in this process."
)
class FieldCacheStats:
    coordinate: str = strawberry.field(description="The field, as Type.field, or (operation).")
    hits: int = strawberry.field(description="Answered from the cache.")
    misses: int = strawberry.field(description="Computed, then stored.")
    coalesced: int = strawberry.field(
        description="Waited for another request's computation of the same entry."
    )
    stale: int = strawberry.field(
        description="Answered past their max age while being recomputed (stale-while-revalidate)."
    )
    bypasses: int = strawberry.field(description="Not cached: the cache could not be used for it.")
    hit_rate: float = strawberry.field(description="hits / (hits + misses + coalesced + stale).")


@strawberry.type(description="How often one tag was invalidated in this process.")
class TagInvalidations:
    tag: str = strawberry.field(description="The tag.")
    count: int = strawberry.field(description="Invalidations since the process started.")


def _invalidations(root: CacheStats, info: Info[Context, None]) -> list[TagInvalidations]:
    """The admin's alone: null, with FORBIDDEN or UNAUTHENTICATED, for anyone else."""
    info.context.require(Role.ADMIN)
    return [TagInvalidations(tag=t, count=n) for t, n in root.tag_counts.items()]


@strawberry.type(
    description="The cache of the process that answered: its state and its counts since it started."
)
class CacheStats:
    status: str = strawberry.field(description="connected, disconnected or disabled.")
    enabled: bool = strawberry.field(description="Whether the cache is on.")
    total_keys: int = strawberry.field(
        description="Keys of this namespace in Redis (counted at most every 5 s)."
    )
    hits: int = strawberry.field(description="Lookups answered from the cache.")
    misses: int = strawberry.field(description="Lookups computed and stored.")
    hit_rate: float = strawberry.field(description="hits / (hits + misses + coalesced + stale).")
    fields: list[FieldCacheStats] = strawberry.field(
        description="The same counts per field coordinate."
    )
    tag_counts: strawberry.Private[dict[str, int]]
    invalidations: list[TagInvalidations] | None = strawberry.field(
        resolver=_invalidations,
        description="Invalidations per tag (the admin's token): tags name what changed.",
    )


def family_of(pattern: str | None) -> str | None:
    """The family a clear pattern names (None: all of them); anything else is refused."""
    if pattern is None or pattern.strip() in ("", "*"):
        return None
    name = pattern.strip().removesuffix(":*")
    if name not in FAMILIES:
        allowed = ", ".join(f"'{f}:*'" for f in FAMILIES)
        raise InvalidInput(
            f"unknown cache pattern {truncated(pattern)!r}: use {allowed} or none for all",
            argument="pattern",
        )
    return name


async def clear_cache(cache: Cache | None, pattern: str | None) -> ClearResult:
    family = family_of(pattern)
    if cache is None:
        return ClearResult(cleared=0, families=[])
    cleared = await cache.clear(family)
    return ClearResult(cleared=cleared, families=[family] if family else list(FAMILIES))


async def cache_stats_dict(cache: Cache | None) -> dict[str, Any]:
    """The original REST service's shape, plus per-field counts and invalidations per tag."""
    if cache is None:
        return {
            "status": "disabled",
            "enabled": False,
            "total_keys": 0,
            "hits": 0,
            "misses": 0,
            "hit_rate": 0.0,
            "fields": {},
            "invalidations": {},
            "refresh": {},
        }
    total = cache.stats.total
    return {
        "status": await cache.status(),
        "enabled": cache.enabled,
        "total_keys": await cache.total_keys(),
        "hits": total.hits,
        "misses": total.misses,
        "hit_rate": total.hit_rate,
        "fields": {name: counts.as_dict() for name, counts in sorted(cache.stats.fields.items())},
        "invalidations": dict(cache.stats.invalidations.most_common(100)),
        # Refresh on write: rounds, entries (field tier) and operations (whole operations)
        # recomputed, and those that failed (each then a plain miss).
        "refresh": {
            name: cache.stats.refresh[name]
            for name in ("rounds", "entries", "entries_failed", "operations", "operations_failed")
        },
    }


async def read_cache_stats(cache: Cache | None) -> CacheStats:
    data = await cache_stats_dict(cache)
    return CacheStats(
        status=data["status"],
        enabled=data["enabled"],
        total_keys=data["total_keys"],
        hits=data["hits"],
        misses=data["misses"],
        hit_rate=data["hit_rate"],
        fields=[
            FieldCacheStats(coordinate=name, **counts) for name, counts in data["fields"].items()
        ],
        tag_counts=data["invalidations"],
    )
