"""The plain records resolvers take and return."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field


class Severity(enum.Enum):
    CRITICAL = "CRITICAL"
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"
    INFO = "INFO"

    @property
    def rank(self) -> int:
        """Storage order: CRITICAL is 0, INFO is 4."""
        return _RANK[self]

    @classmethod
    def from_rank(cls, rank: int) -> Severity:
        return _BY_RANK[rank]


_BY_RANK = list(Severity)
_RANK = {severity: rank for rank, severity in enumerate(_BY_RANK)}


class IndicatorKind(enum.Enum):
    IP = "IP"
    DOMAIN = "DOMAIN"
    URL = "URL"
    HASH = "HASH"
    CVE = "CVE"
    EMAIL = "EMAIL"


@dataclass(frozen=True, slots=True)
class Indicator:
    kind: IndicatorKind
    value: str


@dataclass(frozen=True, slots=True)
class Threat:
    id: int
    source: str
    external_id: str
    title: str
    description: str | None
    severity: Severity
    category: str
    tags: list[str]
    indicators: list[Indicator]
    url: str | None
    published_at: dt.datetime
    ingested_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ThreatFilter:
    severity: list[Severity] | None = None
    source: str | None = None
    category: str | None = None
    search: str | None = None
    since: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class ThreatPage:
    items: list[Threat]
    total: int
    page: int
    limit: int
    has_next_page: bool


@dataclass(frozen=True, slots=True)
class Stats:
    total_threats: int
    critical: int
    high: int
    medium: int
    low: int
    info: int
    last24h: int
    sources: int
    last_ingested_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class TrendPoint:
    date: dt.date
    count: int


@dataclass(frozen=True, slots=True)
class SeverityCount:
    severity: Severity
    count: int


@dataclass(frozen=True, slots=True)
class SourceCount:
    source: str
    count: int


@dataclass(frozen=True, slots=True)
class ThreatInput:
    source: str
    external_id: str
    title: str
    severity: Severity
    category: str
    published_at: dt.datetime
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    indicators: list[Indicator] = field(default_factory=list)
    url: str | None = None


@dataclass(frozen=True, slots=True)
class ThreatChange:
    """One row an ingest wrote: `before` is None for an insert."""

    before: Threat | None
    after: Threat


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    inserted: int
    updated: int
    unchanged: int
    changes: list[ThreatChange]
    # The row that says "the cache has not been told of this yet", written with the change
    # (see Database.settle); None when nothing changed.
    pending: int | None = None
