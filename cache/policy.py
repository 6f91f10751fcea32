"""How a field declares that it may be cached: Apollo-style hints plus the tags it depends on."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cache.exceptions import PolicyError


class Scope(enum.Enum):
    """PUBLIC answers are shared by everyone; PRIVATE ones are per caller."""

    PUBLIC = "PUBLIC"
    PRIVATE = "PRIVATE"


Tags = Callable[[dict[str, Any]], Iterable[str]]
# Given the time (UTC epoch seconds): a label for the current period and the seconds left in it.
Boundary = Callable[[float], tuple[str, float]]


def daily(now: float) -> tuple[str, float]:
    """Periods are UTC calendar days: an answer never outlives its day."""
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    tomorrow = dt.datetime.combine(moment.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    return moment.date().isoformat(), tomorrow.timestamp() - now


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """`max_age` seconds; `group` names the family (per-group TTLs, clearing); `tags(args)` are
    the invalidation tags a result with these arguments depends on. `refresh`: recompute hot
    entries after a write made them stale (see `cache.refresh`); declare it only for a field
    whose resolver depends on nothing but its arguments, the database and the clock read
    when it runs (no caller, no per-request loader), since it is called again outside the
    request. `swr`: seconds an entry past its max age may still be served, while one flight
    recomputes it, as long as no write made it stale (and never past its `boundary`); the
    same conditions as `refresh` apply, since that computation outlives the request."""

    max_age: int
    scope: Scope = Scope.PUBLIC
    group: str = "default"
    tags: Tags | None = None
    boundary: Boundary | None = None
    refresh: bool = False
    swr: int = 0

    def __post_init__(self) -> None:
        if self.max_age < 0:
            raise PolicyError("max_age must not be negative")
        if not self.group or not self.group.replace("-", "").replace("_", "").isalnum():
            raise PolicyError(f"group {self.group!r} must be letters, digits, '-' or '_'")
        if (self.refresh or self.swr) and self.scope is Scope.PRIVATE:
            raise PolicyError("a PRIVATE field cannot be refreshed: its answer is the caller's")
        if self.swr < 0:
            raise PolicyError("swr must not be negative")

    def dependencies(self, args: dict[str, Any]) -> tuple[str, ...]:
        """Every tag an entry depends on: the global epoch, its group, then its own tags."""
        found = dict.fromkeys(("*", self.group))
        if self.tags is not None:
            found.update(dict.fromkeys(self.tags(args)))
        return tuple(found)
