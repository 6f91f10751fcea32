"""The dashboard's aggregates: totals, the trend, and the severity and source charts."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from resolvers.errors import InvalidInput
from resolvers.records import Severity, SeverityCount, SourceCount, Stats, TrendPoint
from resolvers.store import Database, threats

MAX_TREND_DAYS = 366
MAX_SOURCES = 100


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def stats(db: Database, *, now: dt.datetime | None = None) -> Stats:
    now = now or utcnow()
    by_severity = select(threats.c.severity, func.count()).group_by(threats.c.severity)
    recent = select(func.count()).where(threats.c.published_at >= now - dt.timedelta(hours=24))
    sources = select(func.count(threats.c.source.distinct()))
    last = select(func.max(threats.c.ingested_at))
    async with db.engine.connect() as conn:
        counts = {
            Severity.from_rank(rank): n for rank, n in (await conn.execute(by_severity)).all()
        }
        last24h = int((await conn.execute(recent)).scalar_one())
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
    day = func.date(threats.c.published_at)
    query = (
        select(day, func.count())
        .where(threats.c.published_at >= start, threats.c.published_at < end)
        .group_by(day)
    )
    async with db.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    # SQLite's date() gives text, PostgreSQL's a date.
    counts = {d if isinstance(d, dt.date) else dt.date.fromisoformat(d): int(n) for d, n in rows}
    points = (first + dt.timedelta(days=i) for i in range(days))
    return [TrendPoint(date=d, count=counts.get(d, 0)) for d in points]


async def severity_breakdown(db: Database) -> list[SeverityCount]:
    """All five severities, zeros included, CRITICAL first."""
    query = select(threats.c.severity, func.count()).group_by(threats.c.severity)
    async with db.engine.connect() as conn:
        counts = {rank: n for rank, n in (await conn.execute(query)).all()}
    return [SeverityCount(severity=s, count=int(counts.get(s.rank, 0))) for s in Severity]


async def source_breakdown(db: Database, *, limit: int = 10) -> list[SourceCount]:
    """The `limit` largest sources, by count descending, then name."""
    if not 1 <= limit <= MAX_SOURCES:
        raise InvalidInput(f"limit must be between 1 and {MAX_SOURCES}", argument="limit")
    n = func.count().label("n")
    query = (
        select(threats.c.source, n)
        .group_by(threats.c.source)
        .order_by(n.desc(), threats.c.source)
        .limit(limit)
    )
    async with db.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [SourceCount(source=source, count=int(count)) for source, count in rows]
