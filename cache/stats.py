"""Hit and miss counters of this process, in total and per field coordinate."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol


class StatsListener(Protocol):
    """Hears every count as it is made (an exporter of metrics, for one)."""

    def lookup(self, coordinate: str, status: str) -> None: ...

    def invalidated(self, tag: str) -> None: ...

    def backend_error(self) -> None: ...


@dataclass
class FieldCounts:
    """`coalesced` lookups missed but waited for another reader's computation: they are
    not hits (hit_rate counts hits only) and cost the origin nothing. `stale` ones were
    answered past their max age while being recomputed (stale-while-revalidate): not hits
    either, and nobody waited."""

    hits: int = 0
    misses: int = 0
    bypasses: int = 0
    coalesced: int = 0
    stale: int = 0

    @property
    def hit_rate(self) -> float:
        looked_up = self.hits + self.misses + self.coalesced + self.stale
        return round(self.hits / looked_up, 4) if looked_up else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "coalesced": self.coalesced,
            "stale": self.stale,
            "bypasses": self.bypasses,
            "hit_rate": self.hit_rate,
        }


@dataclass
class CacheStats:
    fields: dict[str, FieldCounts] = field(default_factory=dict)
    invalidations: Counter[str] = field(default_factory=Counter)
    backend_errors: int = 0
    lost_invalidations: int = 0  # invalidations that did not reach Redis: an epoch covered them
    # refresh on write: rounds, entries (and entries_failed), operations (operations_failed)
    refresh: Counter[str] = field(default_factory=Counter)
    listener: StatsListener | None = field(default=None, compare=False, repr=False)

    def invalidated(self, tag: str) -> None:
        self.invalidations[tag] += 1
        if self.listener is not None:
            self.listener.invalidated(tag)

    def backend_error(self) -> None:
        self.backend_errors += 1
        if self.listener is not None:
            self.listener.backend_error()

    def record(self, coordinate: str, status: str) -> None:
        if self.listener is not None:
            self.listener.lookup(coordinate, status)
        counts = self.fields.get(coordinate)
        if counts is None:
            counts = self.fields[coordinate] = FieldCounts()
        if status == "HIT":
            counts.hits += 1
        elif status == "MISS":
            counts.misses += 1
        elif status == "COALESCED":
            counts.coalesced += 1
        elif status == "STALE":
            counts.stale += 1
        else:
            counts.bypasses += 1

    @property
    def total(self) -> FieldCounts:
        total = FieldCounts()
        for counts in self.fields.values():
            total.hits += counts.hits
            total.misses += counts.misses
            total.bypasses += counts.bypasses
            total.coalesced += counts.coalesced
            total.stale += counts.stale
        return total
