"""The DateTime and Date scalars: ISO-8601, always UTC on the way out."""

from __future__ import annotations

import datetime as dt

import strawberry
from strawberry.types.scalar import ScalarDefinition, ScalarWrapper


def serialize_datetime(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_datetime(value: object) -> dt.datetime:
    """An ISO-8601 string; without an offset it is taken as UTC."""
    if not isinstance(value, str):
        raise ValueError("DateTime must be an ISO-8601 string such as 2026-01-31T12:00:00Z")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"{value!r} is not an ISO-8601 DateTime such as 2026-01-31T12:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def parse_date(value: object) -> dt.date:
    if not isinstance(value, str):
        raise ValueError("Date must be a string such as 2026-01-31")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a Date such as 2026-01-31") from None


DateTime: ScalarWrapper | ScalarDefinition = strawberry.scalar(
    name="DateTime",
    description="ISO-8601, UTC",
    serialize=serialize_datetime,
    parse_value=parse_datetime,
)
Date: ScalarWrapper | ScalarDefinition = strawberry.scalar(
    name="Date",
    description="YYYY-MM-DD",
    serialize=dt.date.isoformat,
    parse_value=parse_date,
)

SCALAR_OVERRIDES: dict[object, ScalarWrapper | ScalarDefinition] = {
    dt.datetime: DateTime,
    dt.date: Date,
}
