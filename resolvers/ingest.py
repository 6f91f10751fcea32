"""The crawler's write: validate a whole batch, then upsert it in one transaction."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from resolvers.errors import InvalidInput
from resolvers.records import IngestOutcome, Threat, ThreatChange, ThreatInput
from resolvers.rollups import Deltas
from resolvers.store import Database, threats
from resolvers.threats import row_to_threat

MAX_BATCH = 1_000
MAX_DESCRIPTION = 20_000
MAX_TAGS = 50
MAX_INDICATORS = 200
MAX_FUTURE = dt.timedelta(days=1)
# No threat feed holds a publication before the Unix epoch: the NVD's oldest CVEs say 1988,
# KEV starts in 2021, STIX in 2013. Earlier is a placeholder (0001-01-01) or a bug.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SOURCE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_LIMITS = {"external_id": 256, "title": 500, "category": 64, "url": 2048}


def external_id(value: str) -> str:
    """The id as it is stored and matched: NFC, so canonically equal text is one key."""
    return unicodedata.normalize("NFC", value)


def _id_problem(value: str) -> str | None:
    if not value.strip():
        return "must not be empty"
    if value != value.strip():
        return "must not start or end with whitespace"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp") for c in value):
        return "must not contain control, format or private-use characters"
    return None


def _problems(item: ThreatInput, now: dt.datetime) -> list[tuple[str, str]]:
    """(field, message) for everything wrong with one threat."""
    found: list[tuple[str, str]] = []
    if not _SOURCE.fullmatch(item.source):
        found.append(("source", "must be 1-64 lowercase letters, digits, '.', '_' or '-'"))
    id_problem = _id_problem(item.external_id)
    if id_problem:
        found.append(("external_id", id_problem))
    for name in ("title", "category"):
        if not getattr(item, name).strip():
            found.append((name, "must not be empty"))
    for name, limit in _LIMITS.items():
        value = external_id(item.external_id) if name == "external_id" else getattr(item, name)
        if value is not None and len(value) > limit:
            found.append((name, f"must be at most {limit} characters"))
    if item.description is not None and len(item.description) > MAX_DESCRIPTION:
        found.append(("description", f"must be at most {MAX_DESCRIPTION} characters"))
    if item.url is not None and not item.url.startswith(("http://", "https://")):
        found.append(("url", "must be an http(s) URL"))
    if len(item.tags) > MAX_TAGS or any(not t.strip() or len(t) > 64 for t in item.tags):
        found.append(("tags", f"at most {MAX_TAGS} tags of 1-64 characters"))
    if len(item.indicators) > MAX_INDICATORS or any(
        not i.value.strip() or len(i.value) > 2048 for i in item.indicators
    ):
        found.append(("indicators", f"at most {MAX_INDICATORS} indicators of 1-2048 characters"))
    if item.published_at.tzinfo is None:
        found.append(("published_at", "must have a time zone"))
    elif item.published_at < EARLIEST:
        found.append(("published_at", "must not be before 1970-01-01T00:00:00Z"))
    elif item.published_at > now + MAX_FUTURE:
        found.append(("published_at", "must not be more than a day in the future"))
    return found


def validate_batch(batch: Sequence[ThreatInput], now: dt.datetime) -> None:
    """Raise InvalidInput naming every bad field (up to 20) unless the whole batch is good."""
    if not batch:
        raise InvalidInput("threats must hold at least one threat")
    if len(batch) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} threats per call, got {len(batch)}")
    problems: list[dict[str, str]] = []
    seen: dict[tuple[str, str], int] = {}
    for index, item in enumerate(batch):
        for name, message in _problems(item, now):
            problems.append({"path": f"threats[{index}].{_camel(name)}", "message": message})
        first = seen.setdefault((item.source, external_id(item.external_id)), index)
        if first != index:
            problems.append(
                {
                    "path": f"threats[{index}]",
                    "message": f"repeats threats[{first}]'s source and externalId",
                }
            )
    if problems:
        head = problems[0]
        raise InvalidInput(
            f"{len(problems)} invalid field(s); nothing was written. "
            f"First: {head['path']} {head['message']}",
            problems=problems[:20],
        )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _values(item: ThreatInput) -> dict[str, Any]:
    return {
        "source": item.source,
        "external_id": external_id(item.external_id),
        "title": item.title,
        "description": item.description,
        "severity": item.severity.rank,
        "category": item.category,
        "tags": list(item.tags),
        "indicators": [{"kind": i.kind.value, "value": i.value} for i in item.indicators],
        "url": item.url,
        "published_at": item.published_at.astimezone(dt.UTC),
    }


_COMPARED = (
    "title",
    "description",
    "severity",
    "category",
    "tags",
    "indicators",
    "url",
    "published_at",
)
_WRITTEN = (*_COMPARED, "ingested_at")


def _same(row: Any, values: dict[str, Any]) -> bool:
    return all(getattr(row, k) == values[k] for k in _COMPARED)


async def ingest(db: Database, batch: Sequence[ThreatInput], *, now: dt.datetime) -> IngestOutcome:
    """Upsert by (source, external_id), all or nothing; unchanged rows are left alone."""
    validate_batch(batch, now)
    try:
        return await _upsert(db, batch, now)
    except IntegrityError:
        # PostgreSQL: a concurrent ingest inserted one of our keys between our read and our
        # write; the retry sees it and updates instead. (SQLite writes one at a time.)
        return await _upsert(db, batch, now)


async def _upsert(db: Database, batch: Sequence[ThreatInput], now: dt.datetime) -> IngestOutcome:
    wanted = [_values(item) for item in batch]
    keys = [(v["source"], v["external_id"]) for v in wanted]
    changes: list[ThreatChange] = []
    unchanged = 0
    async with db.write() as conn:
        existing = {(r.source, r.external_id): r for r in await _rows(conn, keys, threats)}
        inserts: list[dict[str, Any]] = []
        updates: list[tuple[Any, dict[str, Any]]] = []
        for key, values in zip(keys, wanted, strict=True):
            row = existing.get(key)
            if row is None:
                inserts.append({**values, "ingested_at": now})
            elif _same(row, values):
                unchanged += 1
            else:
                updates.append((row, {**values, "ingested_at": now}))
        if updates:
            statement = (
                threats.update()
                .where(threats.c.id == bindparam("row_id"))
                .values({k: bindparam(f"new_{k}") for k in _WRITTEN})
            )
            params = [
                {"row_id": row.id, **{f"new_{k}": v[k] for k in _WRITTEN}} for row, v in updates
            ]
            await conn.execute(statement, params)
            for row, values in updates:
                changes.append(
                    ThreatChange(before=row_to_threat(row), after=_threat(row.id, values))
                )
        if inserts:
            # One executemany, then the new ids by key: with RETURNING in order, SQLite ran
            # one INSERT per threat, each a round trip to its thread.
            await conn.execute(threats.insert(), inserts)
            added = [(v["source"], v["external_id"]) for v in inserts]
            ids = {(r.source, r.external_id): r.id for r in await _rows(conn, added, _KEYS)}
            for key, values in zip(added, inserts, strict=True):
                changes.append(ThreatChange(before=None, after=_threat(ids[key], values)))
        # The rollups move in this same transaction: a failed batch leaves them untouched too.
        deltas = Deltas()
        for values in inserts:
            deltas.add(values)
        for row, values in updates:
            deltas.add(row, -1)
            deltas.add(values)
        await deltas.apply(conn)
        pending = await db.pending(conn) if changes else None
    return IngestOutcome(
        inserted=len(inserts),
        updated=len(updates),
        unchanged=unchanged,
        changes=changes,
        pending=pending,
    )


_KEYS = (threats.c.id, threats.c.source, threats.c.external_id)


async def _rows(conn: Any, keys: Sequence[tuple[str, str]], columns: Any) -> list[Any]:
    """The rows (of `columns`: a table or a tuple of its columns) with these natural keys,
    one source at a time: SQLite scans the whole table for a row-value IN over (source,
    external_id) (1.5 s for 1,000 keys at 1,000,000 threats), but searches the unique index
    for `source = ? AND external_id IN (...)`."""
    by_source: dict[str, list[str]] = {}
    for source, external_id in keys:
        by_source.setdefault(source, []).append(external_id)
    found: list[Any] = []
    for source, ids in by_source.items():
        for start in range(0, len(ids), 500):
            query = (select(*columns) if isinstance(columns, tuple) else select(columns)).where(
                threats.c.source == source, threats.c.external_id.in_(ids[start : start + 500])
            )
            found.extend((await conn.execute(query)).all())
    return found


def _threat(row_id: int, values: dict[str, Any]) -> Threat:
    return row_to_threat(SimpleNamespace(id=row_id, **values))
