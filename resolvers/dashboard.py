"""The dashboard's aggregates: totals, the trend, and the severity and source charts.

All are read from the rollups (resolvers/rollups.py), never by scanning `threats`."""

from __future__ import annotations

import collections
import datetime as dt

from sqlalchemy import func, select

from resolvers import rollups
from resolvers.errors import InvalidInput
from resolvers.records import Severity, SeverityCount, SourceCount, Stats, TrendPoint
from resolvers.store import Database, threat_hours, threat_totals, threats

MAX_TREND_DAYS = 366
MAX_SOURCES = 100


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def stats(db: Database, *, now: dt.datetime | None = None) -> Stats:
    """Two queries: the rollup's buckets, and the scalars of the rows themselves."""
    now = now or utcnow()
    buckets = select(
        threat_totals.c.severity, threat_totals.c.source, func.sum(threat_totals.c.n)
    ).group_by(threat_totals.c.severity, threat_totals.c.source)
    cutoff = now - dt.timedelta(hours=24)
    # The whole hours after the cutoff from the rollup, the partial one before them by an
    # index range (an hour's threats at most): last24h stays exact for any `now`.
    edge = rollups.hour(cutoff)
    if edge < cutoff:
        edge += dt.timedelta(hours=1)
    partial = select(func.count()).where(
        threats.c.published_at >= cutoff, threats.c.published_at < edge
    )
    whole = select(func.coalesce(func.sum(threat_hours.c.n), 0)).where(threat_hours.c.hour >= edge)
    # max() over ix_threats_ingested: one step down the index, not a scan.
    last = select(func.max(threats.c.ingested_at))
    scalars = select(partial.scalar_subquery(), whole.scalar_subquery(), last.scalar_subquery())
    rows, [(in_edge, in_whole, last_ingested)] = await db.rows(buckets, scalars)
    counts: collections.Counter[Severity] = collections.Counter()
    sources: set[str] = set()
    for rank, source, n in rows:
        counts[Severity.from_rank(rank)] += int(n)
        if n:
            sources.add(source)
    return Stats(
        total_threats=sum(counts.values()),
        critical=counts[Severity.CRITICAL],
        high=counts[Severity.HIGH],
        medium=counts[Severity.MEDIUM],
        low=counts[Severity.LOW],
        info=counts[Severity.INFO],
        last24h=int(in_edge) + int(in_whole),
        sources=len(sources),
        last_ingested_at=last_ingested,
    )


async def trend(
    db: Database, *, days: int = 10, now: dt.datetime | None = None
) -> list[TrendPoint]:
    """One point per UTC day, `days` of them ending today, zero-filled, oldest first."""
    if not 1 <= days <= MAX_TREND_DAYS:
        raise InvalidInput(f"days must be between 1 and {MAX_TREND_DAYS}", argument="days")
    today = (now or utcnow()).astimezone(dt.UTC).date()
    first = today - dt.timedelta(days=days - 1)
    start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=days)
    query = select(threat_hours.c.hour, threat_hours.c.n).where(
        threat_hours.c.hour >= start, threat_hours.c.hour < end
    )
    [rows] = await db.rows(query)
    counts: collections.Counter[dt.date] = collections.Counter()
    for hour, n in rows:
        counts[hour.date()] += int(n)
    points = (first + dt.timedelta(days=i) for i in range(days))
    return [TrendPoint(date=d, count=counts.get(d, 0)) for d in points]


async def severity_breakdown(db: Database) -> list[SeverityCount]:
    """All five severities, zeros included, CRITICAL first."""
    query = select(threat_totals.c.severity, func.sum(threat_totals.c.n)).group_by(
        threat_totals.c.severity
    )
    [rows] = await db.rows(query)
    counts = {rank: n for rank, n in rows}
    return [SeverityCount(severity=s, count=int(counts.get(s.rank, 0))) for s in Severity]


async def source_breakdown(db: Database, *, limit: int = 10) -> list[SourceCount]:
    """The `limit` largest sources, by count descending, then name."""
    if not 1 <= limit <= MAX_SOURCES:
        raise InvalidInput(f"limit must be between 1 and {MAX_SOURCES}", argument="limit")
    n = func.sum(threat_totals.c.n).label("n")
    query = (
        select(threat_totals.c.source, n)
        .group_by(threat_totals.c.source)
        .having(n > 0)
        .order_by(n.desc(), threat_totals.c.source)
        .limit(limit)
    )
    [rows] = await db.rows(query)
    return [SourceCount(source=source, count=int(count)) for source, count in rows]
