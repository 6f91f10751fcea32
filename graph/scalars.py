"""The DateTime and Date scalars: RFC 3339 with an offset in, always UTC on the way out."""

from __future__ import annotations

import datetime as dt
import re

import strawberry
from strawberry.types.scalar import ScalarDefinition, ScalarWrapper


def serialize_datetime(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# RFC 3339 section 5.6: a full date, "T", a full time with seconds, and an explicit offset.
# Without one the same text is a different instant on each server; date-only, week dates,
# basic format and minutes-only times are ISO-8601 too, but not this.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_EXAMPLE = "such as 2026-01-31T12:00:00Z or 2026-01-31T14:00:00+02:00"


def parse_datetime(value: object) -> dt.datetime:
    """An RFC 3339 date-time with its offset (Z or +hh:mm), as an aware UTC datetime."""
    if not isinstance(value, str):
        raise ValueError(f"DateTime must be an ISO-8601 (RFC 3339) string {_EXAMPLE}")
    if not _RFC3339.fullmatch(value):
        raise ValueError(
            f"{value[:64]!r} is not an ISO-8601 (RFC 3339) date-time with a time zone, {_EXAMPLE}"
        )
    try:
        parsed = dt.datetime.fromisoformat(value.upper())  # a fraction past 6 digits is cut
        return parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"{value[:64]!r} is not a valid date-time, {_EXAMPLE}") from None


def parse_date(value: object) -> dt.date:
    if not isinstance(value, str):
        raise ValueError("Date must be a string such as 2026-01-31")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a Date such as 2026-01-31") from None


DateTime: ScalarWrapper | ScalarDefinition = strawberry.scalar(
    name="DateTime",
    description="An RFC 3339 date-time with an offset (Z or +hh:mm); always UTC (Z) on the way out.",
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
