"""Which cached answers a change to threats can affect: the tags reads depend on, and the
tags an ingest bumps.

A list depends on the tags of one of its filter's conjuncts (a changed threat that matches
the list matches every conjunct, so one suffices): its source, else its category, else its
severities, else, for searches, dates and no filter, `threat:any`. An ingest bumps, for the
threat before and after the change, `threat:any`, its source, category and severity, and its
id. Aggregates (stats and charts) depend on `threat:any`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from resolvers.records import Threat, ThreatChange

ANY = "threat:any"


def aggregate_tags(_args: dict[str, Any]) -> list[str]:
    return [ANY]


def list_tags(args: dict[str, Any]) -> list[str]:
    where = args.get("filter")
    if where is None:
        return [ANY]
    if where.source is not None:
        return [f"threat:source={where.source}"]
    if where.category is not None:
        return [f"threat:category={where.category}"]
    if where.severity:
        return sorted({f"threat:severity={s.value}" for s in where.severity})
    return [ANY]


def is_threat_id(text: str) -> bool:
    """ASCII digits only, at most 18 of them: `int()` would also take '²' or '١٢'."""
    return 0 < len(text) <= 18 and text.isascii() and text.isdigit()


def threat_tags(args: dict[str, Any]) -> list[str]:
    raw = str(args["id"])
    return [f"threat:id={int(raw) if is_threat_id(raw) else raw}"]


def _of(threat: Threat) -> Iterable[str]:
    yield f"threat:source={threat.source}"
    yield f"threat:category={threat.category}"
    yield f"threat:severity={threat.severity.value}"
    yield f"threat:id={threat.id}"


def changed_tags(changes: Iterable[ThreatChange]) -> list[str]:
    """Every tag a set of written threats makes stale (none when nothing changed)."""
    tags: dict[str, None] = {}
    for change in changes:
        tags[ANY] = None
        for threat in (change.before, change.after):
            if threat is not None:
                tags.update(dict.fromkeys(_of(threat)))
    return list(tags)
