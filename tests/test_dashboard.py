"""The dashboard's aggregates: stats, trend, severity and source charts."""

from __future__ import annotations

import datetime as dt

from resolvers.records import Severity
from resolvers.store import Database
from tests.conftest import NOW, Execute, add, threat_input


async def test_stats_count_totals_severities_sources_and_last_24h(
    db: Database, execute: Execute
) -> None:
    await add(
        db,
        threat_input(1, severity=Severity.CRITICAL),
        threat_input(2, severity=Severity.HIGH),
        threat_input(30, severity=Severity.HIGH, source="otx", external_id="otx-1"),
        threat_input(40, severity=Severity.INFO, source="urlhaus", external_id="u-1"),
    )
    result = await execute(
        "{ stats { totalThreats critical high medium low info last24h sources lastIngestedAt } }"
    )
    assert not result.errors
    assert result.data["stats"] == {
        "totalThreats": 4,
        "critical": 1,
        "high": 2,
        "medium": 0,
        "low": 0,
        "info": 1,
        "last24h": 2,
        "sources": 3,
        "lastIngestedAt": "2026-03-14T15:09:26Z",
    }


async def test_stats_of_an_empty_database_are_zero_and_null(db: Database, execute: Execute) -> None:
    result = await execute("{ stats { totalThreats last24h sources lastIngestedAt } }")
    assert not result.errors
    assert result.data["stats"] == {
        "totalThreats": 0,
        "last24h": 0,
        "sources": 0,
        "lastIngestedAt": None,
    }


async def test_trend_has_one_zero_filled_point_per_utc_day_ending_today(
    db: Database, execute: Execute
) -> None:
    today_start = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    await add(
        db,
        threat_input(1, published_at=today_start),
        threat_input(2, published_at=today_start - dt.timedelta(microseconds=1)),
        threat_input(3, published_at=today_start - dt.timedelta(days=2, hours=3)),
        threat_input(4, published_at=today_start - dt.timedelta(days=9)),
    )
    result = await execute("{ trend(days: 4) { date count } }")
    assert not result.errors
    assert result.data["trend"] == [
        {"date": "2026-03-11", "count": 1},
        {"date": "2026-03-12", "count": 0},
        {"date": "2026-03-13", "count": 1},
        {"date": "2026-03-14", "count": 1},
    ]
    default = await execute("{ trend { date } }")
    assert len(default.data["trend"]) == 10


async def test_severity_breakdown_lists_all_five_critical_first(
    db: Database, execute: Execute
) -> None:
    await add(db, threat_input(1, severity=Severity.LOW), threat_input(2, severity=Severity.LOW))
    result = await execute("{ severityBreakdown { severity count } }")
    assert not result.errors
    assert result.data["severityBreakdown"] == [
        {"severity": "CRITICAL", "count": 0},
        {"severity": "HIGH", "count": 0},
        {"severity": "MEDIUM", "count": 0},
        {"severity": "LOW", "count": 2},
        {"severity": "INFO", "count": 0},
    ]


async def test_source_breakdown_orders_by_count_then_name_and_limits(
    db: Database, execute: Execute
) -> None:
    items = [threat_input(n, source="otx", external_id=f"o{n}") for n in range(3)]
    items += [threat_input(n, source="cisa-kev", external_id=f"c{n}") for n in range(2)]
    items += [threat_input(n, source="abuseipdb", external_id=f"a{n}") for n in range(2)]
    items += [threat_input(1, source="nvd")]
    await add(db, *items)
    result = await execute("{ sourceBreakdown(limit: 3) { source count } }")
    assert not result.errors
    assert result.data["sourceBreakdown"] == [
        {"source": "otx", "count": 3},
        {"source": "abuseipdb", "count": 2},
        {"source": "cisa-kev", "count": 2},
    ]
