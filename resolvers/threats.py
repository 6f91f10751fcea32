"""Reading threats: one page of a filtered list, or threats by id."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select

from resolvers.errors import InvalidInput
from resolvers.records import Indicator, IndicatorKind, Severity, Threat, ThreatFilter, ThreatPage
from resolvers.store import Database, threat_totals, threats, unicode_lower

MAX_LIMIT = 100
MAX_PAGE = 100_000
MAX_SEARCH = 200


def row_to_threat(row: Any) -> Threat:
    return Threat(
        id=row.id,
        source=row.source,
        external_id=row.external_id,
        title=row.title,
        description=row.description,
        severity=Severity.from_rank(row.severity),
        category=row.category,
        tags=list(row.tags),
        indicators=[Indicator(IndicatorKind(i["kind"]), i["value"]) for i in row.indicators],
        url=row.url,
        published_at=row.published_at,
        ingested_at=row.ingested_at,
    )


def _conditions(where: ThreatFilter | None) -> list[ColumnElement[bool]]:
    if where is None:
        return []
    conditions: list[ColumnElement[bool]] = []
    if where.severity:
        ranks = sorted({s.rank for s in where.severity})
        conditions.append(threats.c.severity.in_(ranks))
    if where.source is not None:
        conditions.append(threats.c.source == where.source)
    if where.category is not None:
        conditions.append(threats.c.category == where.category)
    if where.search:
        if len(where.search) > MAX_SEARCH:
            raise InvalidInput(f"filter.search is longer than {MAX_SEARCH} characters")
        # Case-insensitive in every script: both sides lower-cased (see `unicode_lower`).
        needle = where.search.lower()
        conditions.append(
            or_(
                unicode_lower(threats.c.title).contains(needle, autoescape=True),
                unicode_lower(threats.c.description).contains(needle, autoescape=True),
            )
        )
    if where.since is not None:
        conditions.append(threats.c.published_at >= where.since)
    return conditions


def _where(query: Select[Any], conditions: Sequence[ColumnElement[bool]]) -> Select[Any]:
    return query.where(and_(*conditions)) if conditions else query


def _total_query(where: ThreatFilter | None, conditions: list[ColumnElement[bool]]) -> Any:
    """From the rollup when the filter is only severity, source and category (each a key
    of `threat_totals`); otherwise a count over the filtered threats."""
    if where is not None and (where.search or where.since is not None):
        return _where(select(func.count()).select_from(threats), conditions)
    rolled: list[ColumnElement[bool]] = []
    if where is not None and where.severity:
        rolled.append(threat_totals.c.severity.in_(sorted({s.rank for s in where.severity})))
    if where is not None and where.source is not None:
        rolled.append(threat_totals.c.source == where.source)
    if where is not None and where.category is not None:
        rolled.append(threat_totals.c.category == where.category)
    return _where(select(func.coalesce(func.sum(threat_totals.c.n), 0)), rolled)


async def list_threats(
    db: Database, *, page: int = 1, limit: int = 10, where: ThreatFilter | None = None
) -> ThreatPage:
    """Threats matching `where`, newest first (publishedAt, then id, descending)."""
    if not 1 <= page <= MAX_PAGE:
        raise InvalidInput(f"page must be between 1 and {MAX_PAGE}", argument="page")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", argument="limit")
    conditions = _conditions(where)
    rows_query = _where(select(threats), conditions)
    rows_query = rows_query.order_by(threats.c.published_at.desc(), threats.c.id.desc())
    rows_query = rows_query.limit(limit).offset((page - 1) * limit)
    total_query = _total_query(where, conditions)
    rows, [(total,)] = await db.rows(rows_query, total_query)
    return ThreatPage(
        items=[row_to_threat(row) for row in rows],
        total=int(total),
        page=page,
        limit=limit,
        has_next_page=page * limit < int(total),
    )


async def threats_by_ids(db: Database, ids: Iterable[int]) -> dict[int, Threat]:
    """The threats among `ids` that exist, in one query."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    [rows] = await db.rows(select(threats).where(threats.c.id.in_(wanted)))
    return {row.id: row_to_threat(row) for row in rows}
