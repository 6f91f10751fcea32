"""The rollups answer every aggregate exactly as a count over `threats` would, without scanning it."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from typing import Any

import pytest
from sqlalchemy import and_, event, func, select, text

from resolvers import dashboard
from resolvers.ingest import ingest
from resolvers.records import Severity, ThreatFilter
from resolvers.seed import seed
from resolvers.store import Database, threat_hours, threat_totals, threats
from resolvers.threats import list_threats
from tests.conftest import NOW, threat_input

SOURCES = ("nvd", "otx", "urlhaus", "cisa-kev")
CATEGORIES = ("vulnerability", "malware", "phishing")
# Around the 24 h edge (on an hour, just inside, just outside), mid-hour, and a day ahead.
NOWS = (
    NOW,
    NOW.replace(minute=0, second=0, microsecond=0),
    NOW - dt.timedelta(hours=3, minutes=17),
    NOW + dt.timedelta(hours=20, seconds=1),
    NOW - dt.timedelta(days=9, minutes=1),
)
FILTERS = (
    None,
    ThreatFilter(),
    ThreatFilter(severity=[Severity.CRITICAL]),
    ThreatFilter(severity=[Severity.HIGH, Severity.INFO, Severity.HIGH]),
    ThreatFilter(source="otx"),
    ThreatFilter(source="nobody"),
    ThreatFilter(category="malware"),
    ThreatFilter(severity=[Severity.LOW, Severity.MEDIUM], source="nvd", category="vulnerability"),
    ThreatFilter(source="urlhaus", category="phishing"),
    ThreatFilter(search="flaw", source="nvd"),
    ThreatFilter(since=NOW - dt.timedelta(days=2), severity=[Severity.HIGH]),
)


def _random_threat(rng: random.Random, n: int, source: str) -> Any:
    published = NOW + dt.timedelta(minutes=rng.randint(-12 * 24 * 60, 23 * 60))
    if rng.random() < 0.2:  # right at the edges of hours and of the 24 h window
        published = NOW - dt.timedelta(hours=24) + dt.timedelta(seconds=rng.choice((-1, 0, 1)))
    return threat_input(
        n,
        source=source,
        severity=rng.choice(list(Severity)),
        category=rng.choice(CATEGORIES),
        published_at=published,
    )


async def _random_ingests(db: Database, rng: random.Random, rounds: int = 6) -> None:
    """New threats, threats moved between buckets, and threats sent again unchanged."""
    sent: dict[int, Any] = {}
    for _ in range(rounds):
        batch: dict[int, Any] = {}
        for _ in range(rng.randint(1, 40)):
            if sent and rng.random() < 0.5:
                n = rng.choice(list(sent))
                moved = _random_threat(rng, n, sent[n].source)
                batch[n] = moved if rng.random() < 0.7 else sent[n]
            else:
                n = len(sent) + len(batch) + 1
                batch[n] = _random_threat(rng, n, rng.choice(SOURCES))
        await ingest(db, list(batch.values()), now=NOW + dt.timedelta(minutes=len(sent)))
        sent.update(batch)


async def _reference_stats(db: Database, now: dt.datetime) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        by_severity = dict(
            (
                await conn.execute(
                    select(threats.c.severity, func.count()).group_by(threats.c.severity)
                )
            ).all()
        )
        recent = (
            await conn.execute(
                select(func.count()).where(threats.c.published_at >= now - dt.timedelta(hours=24))
            )
        ).scalar_one()
        sources = (await conn.execute(select(func.count(threats.c.source.distinct())))).scalar_one()
        last = (await conn.execute(select(func.max(threats.c.ingested_at)))).scalar_one()
    return {
        "total_threats": sum(by_severity.values()),
        **{s.name.lower(): by_severity.get(s.rank, 0) for s in Severity},
        "last24h": recent,
        "sources": sources,
        "last_ingested_at": last,
    }


async def _reference_days(db: Database) -> dict[dt.date, int]:
    async with db.engine.connect() as conn:
        published = (await conn.execute(select(threats.c.published_at))).scalars().all()
    days: dict[dt.date, int] = {}
    for moment in published:
        days[moment.date()] = days.get(moment.date(), 0) + 1
    return days


async def _reference_sources(db: Database) -> list[tuple[str, int]]:
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(select(threats.c.source, func.count()).group_by(threats.c.source))
        ).all()
    return sorted(((s, int(n)) for s, n in rows), key=lambda r: (-r[1], r[0]))


async def _reference_total(db: Database, where: ThreatFilter | None) -> int:
    conditions = []
    if where is not None:
        if where.severity:
            conditions.append(threats.c.severity.in_([s.rank for s in where.severity]))
        if where.source is not None:
            conditions.append(threats.c.source == where.source)
        if where.category is not None:
            conditions.append(threats.c.category == where.category)
        if where.search:
            conditions.append(threats.c.title.contains(where.search))
        if where.since is not None:
            conditions.append(threats.c.published_at >= where.since)
    query = select(func.count()).select_from(threats)
    if conditions:
        query = query.where(and_(*conditions))
    async with db.engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def assert_aggregates_match(db: Database) -> None:
    """Every aggregate, against a plain count over `threats`."""
    for now in NOWS:
        stats = await dashboard.stats(db, now=now)
        expected = await _reference_stats(db, now)
        assert {k: getattr(stats, k) for k in expected} == expected, now
    days = await _reference_days(db)
    for now in NOWS:
        for span in (1, 2, 10, 30, 366):
            points = await dashboard.trend(db, days=span, now=now)
            assert [(p.date, p.count) for p in points] == [
                (p.date, days.get(p.date, 0)) for p in points
            ], (now, span)
    reference = await _reference_stats(db, NOW)
    severities = {s: reference[s.name.lower()] for s in Severity}
    assert [(c.severity, c.count) for c in await dashboard.severity_breakdown(db)] == [
        (s, severities[s]) for s in Severity
    ]
    sources = await _reference_sources(db)
    for limit in (1, 2, 3, 10, 100):
        got = await dashboard.source_breakdown(db, limit=limit)
        assert [(c.source, c.count) for c in got] == sources[:limit], limit
    for where in FILTERS:
        page = await list_threats(db, where=where, limit=5)
        assert page.total == await _reference_total(db, where), where


async def test_aggregates_match_a_count_after_random_ingests_and_updates(db: Database) -> None:
    await assert_aggregates_match(db)  # empty
    await _random_ingests(db, random.Random(11))
    assert await db.count() > 50
    await assert_aggregates_match(db)


async def test_aggregates_match_a_count_after_seed(db: Database) -> None:
    await seed(db, 400, days=20, seed=5, now=NOW)
    await assert_aggregates_match(db)
    await _random_ingests(db, random.Random(12), rounds=2)
    await assert_aggregates_match(db)


async def test_a_database_without_rollups_is_counted_on_start(db: Database) -> None:
    await _random_ingests(db, random.Random(13))
    async with db.write() as conn:  # as a database from before the rollups
        await conn.execute(threat_totals.delete())
        await conn.execute(threat_hours.delete())
    await db.create_schema()
    await assert_aggregates_match(db)


async def test_two_processes_starting_at_once_count_the_rollups_once(db: Database) -> None:
    await _random_ingests(db, random.Random(16))
    async with db.write() as conn:
        await conn.execute(threat_totals.delete())
        await conn.execute(threat_hours.delete())
    other = Database(db.url)
    try:
        await asyncio.gather(db.create_schema(), other.create_schema())
    finally:
        await other.close()
    await assert_aggregates_match(db)


async def test_a_recount_beside_ingests_misses_none_and_counts_none_twice(db: Database) -> None:
    await _random_ingests(db, random.Random(17), rounds=2)
    rng = random.Random(18)
    batches = [
        [_random_threat(rng, 90_000 + 100 * b + n, rng.choice(SOURCES)) for n in range(30)]
        for b in range(4)
    ]
    await asyncio.gather(db.recount(), *(ingest(db, batch, now=NOW) for batch in batches))
    await assert_aggregates_match(db)


async def test_a_failed_batch_leaves_the_rollups_untouched(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _random_ingests(db, random.Random(14), rounds=2)

    async def fail(_conn: Any) -> int:
        raise RuntimeError("the transaction dies after the rollups moved")

    monkeypatch.setattr(db, "pending", fail)
    rng = random.Random(1)
    items = [_random_threat(rng, 50_000 + n, "otx") for n in range(20)]
    with pytest.raises(RuntimeError):
        await ingest(db, items, now=NOW)
    await assert_aggregates_match(db)


async def _plans(db: Database, statements: list[tuple[str, Any]]) -> list[str]:
    explain = "EXPLAIN QUERY PLAN " if db.is_sqlite else "EXPLAIN "
    plans = []
    async with db.engine.connect() as conn:
        if not db.is_sqlite:
            # A table of a few rows is cheaper to scan than to search; forbidding scans asks
            # whether a plan without one exists (PostgreSQL still scans when none does).
            await conn.execute(text("SET enable_seqscan = off"))
        for statement, parameters in statements:
            rows = (await conn.exec_driver_sql(explain + statement, parameters)).all()
            plans.append("\n".join(" ".join(str(c) for c in row) for row in rows))
    return plans


async def test_no_aggregate_scans_the_threats_table(db: Database) -> None:
    await _random_ingests(db, random.Random(15), rounds=2)
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        await dashboard.stats(db, now=NOW)
        await dashboard.trend(db, days=30, now=NOW)
        await dashboard.severity_breakdown(db)
        await dashboard.source_breakdown(db, limit=5)
        for where in FILTERS[:9]:  # the filters a rollup answers
            await list_threats(db, where=where)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    aggregates = [
        (s, p)
        for s, p in statements
        if "count(" in s.lower()
        or "sum(" in s.lower()
        or "max(" in s.lower()
        or "threat_hours" in s
    ]
    assert len(aggregates) == 2 + 1 + 1 + 1 + 9  # stats, trend, the two charts, 9 totals
    scan = "SCAN threats" if db.is_sqlite else "Seq Scan on threats"
    for (statement, _), plan in zip(aggregates, await _plans(db, aggregates), strict=True):
        assert scan not in plan, f"{statement}\n{plan}"
