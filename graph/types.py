"""The GraphQL types of the contract, and their conversion from resolver records."""

from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry

from resolvers import records
from resolvers.records import IndicatorKind, Severity

# The records' enums become the GraphQL enums themselves: no conversion on either path.
strawberry.enum(Severity, description="How bad a threat is, worst first.")
strawberry.enum(IndicatorKind)


@strawberry.type
class Indicator:
    kind: IndicatorKind
    value: str


@strawberry.type
class Threat:
    id: strawberry.ID
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

    @classmethod
    def from_record(cls, r: records.Threat) -> Threat:
        return cls(
            id=strawberry.ID(str(r.id)),
            source=r.source,
            external_id=r.external_id,
            title=r.title,
            description=r.description,
            severity=r.severity,
            category=r.category,
            tags=list(r.tags),
            indicators=[Indicator(kind=i.kind, value=i.value) for i in r.indicators],
            url=r.url,
            published_at=r.published_at,
            ingested_at=r.ingested_at,
        )


@strawberry.type
class ThreatPage:
    items: list[Threat]
    total: int
    page: int
    limit: int
    has_next_page: bool

    @classmethod
    def from_record(cls, r: records.ThreatPage) -> ThreatPage:
        items = [Threat.from_record(t) for t in r.items]
        return cls(
            items=items, total=r.total, page=r.page, limit=r.limit, has_next_page=r.has_next_page
        )


@strawberry.type
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


@strawberry.type
class TrendPoint:
    date: dt.date
    count: int


@strawberry.type
class SeverityCount:
    severity: Severity
    count: int


@strawberry.type
class SourceCount:
    source: str
    count: int


def from_flat_record(cls: type[Any], record: Any) -> Any:
    """A Strawberry type built from a record with the same field names."""
    names = cls.__strawberry_definition__.fields
    return cls(**{f.python_name: getattr(record, f.python_name) for f in names})


@strawberry.type
class IngestResult:
    inserted: int
    updated: int
    unchanged: int


@strawberry.input
class ThreatFilter:
    severity: list[Severity] | None = None
    source: str | None = None
    category: str | None = None
    search: str | None = None
    since: dt.datetime | None = None

    def to_record(self) -> records.ThreatFilter:
        return records.ThreatFilter(
            severity=list(self.severity) if self.severity is not None else None,
            source=self.source,
            category=self.category,
            search=self.search,
            since=self.since,
        )


@strawberry.input
class IndicatorInput:
    kind: IndicatorKind
    value: str


@strawberry.input
class ThreatInput:
    source: str
    external_id: str
    title: str
    description: str | None = None
    severity: Severity
    category: str
    tags: list[str] | None = None
    indicators: list[IndicatorInput] | None = None
    url: str | None = None
    published_at: dt.datetime

    def to_record(self) -> records.ThreatInput:
        return records.ThreatInput(
            source=self.source,
            external_id=self.external_id,
            title=self.title,
            severity=self.severity,
            category=self.category,
            published_at=self.published_at,
            description=self.description,
            tags=list(self.tags or []),
            indicators=[records.Indicator(i.kind, i.value) for i in self.indicators or []],
            url=self.url,
        )
