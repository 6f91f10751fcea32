"""What a parser makes of one feed entry: a threat to send, or a reason it was not."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO")


@dataclass(frozen=True, slots=True)
class Threat:
    """One `ThreatInput`, as the crawler builds it."""

    source: str
    external_id: str
    title: str
    severity: str
    category: str
    published_at: dt.datetime
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    indicators: list[tuple[str, str]] = field(default_factory=list)  # (IndicatorKind, value)
    url: str | None = None

    def to_input(self) -> dict[str, Any]:
        """The `ThreatInput` variable, in the API's JSON shape."""
        return {
            "source": self.source,
            "externalId": self.external_id,
            "title": self.title,
            "description": self.description,
            "severity": self.severity,
            "category": self.category,
            "tags": self.tags,
            "indicators": [{"kind": k, "value": v} for k, v in self.indicators],
            "url": self.url,
            # RFC 3339 with an offset, as the server requires; UTC, so never a seconds offset.
            "publishedAt": self.published_at.astimezone(dt.UTC).isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that was not sent, or that the server refused, and why."""

    record: str  # the feed's id for it, or its position when it has none
    reason: str


@dataclass(slots=True)
class Parsed:
    """A parser's output: threats to send, records it could not map, records it left out."""

    threats: list[Threat] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    skipped: list[Rejection] = field(default_factory=list)


class BadRecord(Exception):
    """Raised inside a parser for one entry; becomes a `Rejection`, never leaves the parser."""


def text(entry: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    """A string property, stripped; `BadRecord` if required and missing or not a string."""
    value = entry.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise BadRecord(f"'{key}' is missing")
        return None
    if not isinstance(value, str):
        raise BadRecord(f"'{key}' must be a string, not {type(value).__name__}")
    return value.strip()


def timestamp(value: str | None, key: str) -> dt.datetime:
    """An ISO-8601 date or date-time, in UTC; one without an offset is UTC (NVD and KEV write
    none): the server requires an explicit offset, so the crawler states the feed's meaning."""
    if value is None:
        raise BadRecord(f"'{key}' is missing")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRecord(f"'{key}' is not an ISO-8601 date: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:
        raise BadRecord(f"'{key}' is out of range: {value!r}") from None


def tags(values: list[str]) -> list[str]:
    """Tags as the server takes them: once each, 1-64 characters, at most 50. A tag is derived
    (a label, a vendor's name), so one too long is left out rather than the record rejected."""
    kept = [v.strip() for v in values if v.strip() and len(v.strip()) <= 64]
    return list(dict.fromkeys(kept))[:50]


def short(value: str, limit: int) -> str:
    """`value` on one line, cut at `limit` characters with an ellipsis."""
    flat = " ".join(value.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
