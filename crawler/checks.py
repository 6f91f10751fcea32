"""Records the server would refuse, found before sending: by the server's own rules
(`resolvers.ingest.validate_batch`, so the two cannot drift), plus what would refuse a whole
request (a NUL, text that is not UTF-8) and an id the feed repeats."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from crawler.threat import Rejection, Threat
from resolvers import records
from resolvers.errors import InvalidInput
from resolvers.ingest import external_id, validate_batch


def _record(threat: Threat) -> records.ThreatInput:
    return records.ThreatInput(
        source=threat.source,
        external_id=threat.external_id,
        title=threat.title,
        severity=records.Severity(threat.severity),
        category=threat.category,
        published_at=threat.published_at,
        description=threat.description,
        tags=list(threat.tags),
        indicators=[records.Indicator(records.IndicatorKind(k), v) for k, v in threat.indicators],
        url=threat.url,
    )


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _text_problem(threat: Threat) -> str | None:
    for value in _strings(threat.to_input()):
        if "\x00" in value:
            return "a text field contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "a text field is not valid Unicode (a lone surrogate)"
    return None


def problem(threat: Threat, now: dt.datetime) -> str | None:
    """Why the server would refuse this threat, or None."""
    found = _text_problem(threat)
    if found:
        return found
    try:
        validate_batch([_record(threat)], now)
    except InvalidInput as exc:
        problems = exc.extensions.get("problems") or []
        reasons = [f"{p['path'].removeprefix('threats[0].')} {p['message']}" for p in problems]
        return "; ".join(reasons) or exc.message
    return None


def screen(threats: list[Threat], now: dt.datetime) -> tuple[list[Threat], list[Rejection]]:
    """The threats worth sending, and the rest with their reasons."""
    kept: list[Threat] = []
    rejected: list[Rejection] = []
    seen: set[tuple[str, str]] = set()
    for threat in threats:
        key = (threat.source, external_id(threat.external_id))
        reason = problem(threat, now)
        if reason is None and key in seen:
            reason = "the feed has this id more than once; the first one was sent"
        if reason is not None:
            rejected.append(Rejection(threat.external_id or "(no id)", reason))
        else:
            seen.add(key)
            kept.append(threat)
    return kept, rejected
