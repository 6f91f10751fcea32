"""Counts kept beside `threats` so that the dashboard never scans it.

Two rollups, written in the same transaction as the ingest that changes them:

- `threat_totals`: threats per (severity, source, category). Answers the stats, both
  breakdowns, the distinct source count and the total of a page filtered only by those.
- `threat_hours`: threats per UTC hour of publishedAt. Answers the trend (its hours summed
  per day) and `last24h`: the whole hours after `now - 24h` from here, plus an index range
  count of the threats in the one partial hour at the window's edge.

A bucket whose count falls to zero stays, with n = 0; readers skip it.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import time
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from resolvers.store import threat_hours, threat_totals, threats

log = logging.getLogger(__name__)

Bucket = tuple[int, str, str]  # (severity rank, source, category)


class hour_of(FunctionElement[dt.datetime]):
    """A stored timestamp truncated to its hour, in the engine's own storage format."""

    name = "hour_of"
    inherit_cache = True


@compiles(hour_of)
def _hour_of_default(element: hour_of, compiler: Any, **kw: Any) -> str:
    return f"date_trunc('hour', {compiler.process(element.clauses, **kw)})"


@compiles(hour_of, "sqlite")
def _hour_of_sqlite(element: hour_of, compiler: Any, **kw: Any) -> str:
    # SQLAlchemy stores SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff'.
    return f"strftime('%Y-%m-%d %H:00:00.000000', {compiler.process(element.clauses, **kw)})"


def hour(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


class Deltas:
    """What one ingest adds to and takes from each bucket."""

    def __init__(self) -> None:
        self.totals: collections.Counter[Bucket] = collections.Counter()
        self.hours: collections.Counter[dt.datetime] = collections.Counter()

    def add(self, values: Any, sign: int = 1) -> None:
        """Count (or, with sign -1, uncount) a row or a dict of threat values."""
        row = values if not isinstance(values, dict) else SimpleNamespace(**values)
        self.totals[(row.severity, row.source, row.category)] += sign
        self.hours[hour(row.published_at)] += sign

    async def apply(self, conn: AsyncConnection) -> None:
        """Write the non-zero deltas, in key order so concurrent writers never deadlock."""
        totals = sorted((k, n) for k, n in self.totals.items() if n)
        hours = sorted((k, n) for k, n in self.hours.items() if n)
        if totals:
            params = [
                {"severity": s, "source": so, "category": c, "n": n} for (s, so, c), n in totals
            ]
            await conn.execute(
                _increment(conn, threat_totals, ("severity", "source", "category")), params
            )
        if hours:
            params = [{"hour": h, "n": n} for h, n in hours]
            await conn.execute(_increment(conn, threat_hours, ("hour",)), params)


def _increment(conn: AsyncConnection, table: Table, keys: tuple[str, ...]) -> Any:
    make = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
    statement = make(table)
    return statement.on_conflict_do_update(
        index_elements=list(keys), set_={"n": table.c.n + statement.excluded.n}
    )


async def lock(conn: AsyncConnection) -> None:
    """Hold off every other writer of the rollups (readers go on) until this transaction
    ends: a recount then sees each ingest either wholly before it or wholly after it. SQLite
    needs nothing: its writers take turns."""
    if conn.dialect.name != "sqlite":
        await conn.execute(
            text("LOCK TABLE threat_totals, threat_hours IN SHARE ROW EXCLUSIVE MODE")
        )


async def missing(conn: AsyncConnection) -> bool:
    """True when threats exist but the rollups hold nothing: a database from before them."""
    has_totals = (await conn.execute(select(threat_totals.c.n).limit(1))).first() is not None
    if has_totals:
        return False
    return (await conn.execute(select(threats.c.id).limit(1))).first() is not None


async def rebuild(conn: AsyncConnection) -> None:
    """Recount both rollups from `threats`, in the caller's transaction."""
    await lock(conn)
    started = time.perf_counter()
    steps: Iterable[tuple[Table, Any]] = (
        (
            threat_totals,
            select(threats.c.severity, threats.c.source, threats.c.category, func.count()).group_by(
                threats.c.severity, threats.c.source, threats.c.category
            ),
        ),
        (
            threat_hours,
            select(hour_of(threats.c.published_at), func.count()).group_by(
                hour_of(threats.c.published_at)
            ),
        ),
    )
    for done, (table, query) in enumerate(steps, start=1):
        await conn.execute(table.delete())
        columns = [c.name for c in table.columns]
        await conn.execute(insert(table).from_select(columns, query))
        log.info(
            "rollups: %s recounted (%d/2, %.1f s)", table.name, done, time.perf_counter() - started
        )
