"""The dashboard's aggregates: totals, the trend, and the severity and source charts.

All are read from the rollups (resolvers/rollups.py), never by scanning `threats`."""

from __future__ import annotations

import collections
import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from resolvers import rollups
from resolvers.errors import InvalidInput
from resolvers.records import Severity, SeverityCount, SourceCount, Stats, TrendPoint
from resolvers.store import Database, threat_hours, threat_totals, threats

MAX_TREND_DAYS = 366
MAX_SOURCES = 100


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def stats(db: Database, *, now: dt.datetime | None = None) -> Stats:
    now = now or utcnow()
    by_severity = select(threat_totals.c.severity, func.sum(threat_totals.c.n)).group_by(
        threat_totals.c.severity
    )
    sources = select(func.count(threat_totals.c.source.distinct())).where(threat_totals.c.n > 0)
    # max() over ix_threats_ingested: one step down the index, not a scan.
    last = select(func.max(threats.c.ingested_at))
    async with db.engine.connect() as conn:
        counts = {
            Severity.from_rank(rank): int(n) for rank, n in (await conn.execute(by_severity)).all()
        }
        last24h = await _since(conn, now - dt.timedelta(hours=24))
        source_count = int((await conn.execute(sources)).scalar_one())
        last_ingested = (await conn.execute(last)).scalar_one()
    return Stats(
        total_threats=sum(counts.values()),
        critical=counts.get(Severity.CRITICAL, 0),
        high=counts.get(Severity.HIGH, 0),
        medium=counts.get(Severity.MEDIUM, 0),
        low=counts.get(Severity.LOW, 0),
        info=counts.get(Severity.INFO, 0),
        last24h=last24h,
        sources=source_count,
        last_ingested_at=last_ingested,
    )


async def _since(conn: AsyncConnection, cutoff: dt.datetime) -> int:
    """Threats published at or after `cutoff`, exactly: the whole hours from the rollup, and
    the threats of the partial hour before them by an index range (at most an hour's worth)."""
    edge = rollups.hour(cutoff)
    if edge < cutoff:
        edge += dt.timedelta(hours=1)
    partial = select(func.count()).where(
        threats.c.published_at >= cutoff, threats.c.published_at < edge
    )
    whole = select(func.coalesce(func.sum(threat_hours.c.n), 0)).where(threat_hours.c.hour >= edge)
    return int((await conn.execute(partial)).scalar_one()) + int(
        (await conn.execute(whole)).scalar_one()
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
    async with db.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
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
    async with db.engine.connect() as conn:
        counts = {rank: n for rank, n in (await conn.execute(query)).all()}
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
    async with db.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [SourceCount(source=source, count=int(count)) for source, count in rows]
