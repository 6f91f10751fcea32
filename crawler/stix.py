"""STIX 2.1 bundles onto threats, by a parser of our own (the README says why not `stix2`).

The domain objects that describe a threat are mapped; relationships, identities, markings,
reports, observables and revoked objects are skipped. STIX has no severity: a label such as
`critical` or `severity:high` sets it, otherwise the object's type does (`_BY_TYPE`).
"""

from __future__ import annotations

import re
from typing import Any

from crawler.errors import FeedError
from crawler.threat import SEVERITIES, BadRecord, Parsed, Rejection, Threat, short, text, timestamp
from crawler.threat import tags as clean_tags

SOURCE = "stix"
_BY_TYPE = {
    "threat-actor": "HIGH",
    "intrusion-set": "HIGH",
    "campaign": "HIGH",
    "malware": "HIGH",
    "indicator": "MEDIUM",
    "vulnerability": "MEDIUM",
    "attack-pattern": "MEDIUM",
    "infrastructure": "MEDIUM",
    "tool": "LOW",
}
# An indicator whose type says it is malicious is HIGH.
_MALICIOUS = {"malicious-activity", "compromised", "attribution"}
# `[object:path = 'value']` comparisons of a pattern, and what kind of indicator each is.
_COMPARISON = re.compile(r"([a-z0-9-]+):([A-Za-z0-9_.'-]+)\s*=\s*'((?:[^'\\]|\\.)*)'")
_KINDS = {
    "ipv4-addr": "IP",
    "ipv6-addr": "IP",
    "domain-name": "DOMAIN",
    "url": "URL",
    "email-addr": "EMAIL",
    "file": "HASH",
}


def parse(document: Any, source: str = SOURCE) -> Parsed:
    """Every object of the bundle: mapped, rejected with its reason, or skipped by type."""
    if not isinstance(document, dict) or document.get("type") != "bundle":
        raise FeedError("not a STIX 2.1 bundle: the top-level object's type is not 'bundle'")
    objects = document.get("objects", [])
    if not isinstance(objects, list):
        raise FeedError("not a STIX 2.1 bundle: 'objects' is not a list")
    parsed = Parsed()
    for index, entry in enumerate(objects):
        name = f"objects[{index}]"
        try:
            if not isinstance(entry, dict):
                raise BadRecord("is not an object")
            name = text(entry, "id") or name
            kind = text(entry, "type", required=True)
            if kind not in _BY_TYPE:
                parsed.skipped.append(Rejection(name, f"type {kind}: not a threat"))
            elif entry.get("revoked") is True:
                parsed.skipped.append(Rejection(name, "revoked"))
            else:
                parsed.threats.append(_threat(entry, str(kind), source))
        except BadRecord as exc:
            parsed.rejected.append(Rejection(name, str(exc)))
    return parsed


def _strings(entry: dict[str, Any], key: str) -> list[str]:
    value = entry.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRecord(f"'{key}' must be a list of strings")
    return [v.strip() for v in value if v.strip()]


def _severity(kind: str, labels: list[str], types: list[str]) -> str:
    for label in labels:
        word = label.lower().removeprefix("severity:").removeprefix("severity-").upper()
        if word in SEVERITIES:
            return word
    if kind == "indicator" and _MALICIOUS & set(types):
        return "HIGH"
    return _BY_TYPE[kind]


def _indicators(entry: dict[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for ref in entry.get("external_references") or []:
        if isinstance(ref, dict) and ref.get("source_name") == "cve":
            cve = ref.get("external_id")
            if isinstance(cve, str) and cve.strip():
                found.append(("CVE", cve.strip()))
    pattern = entry.get("pattern")
    if isinstance(pattern, str) and entry.get("pattern_type", "stix") == "stix":
        for obj, path, value in _COMPARISON.findall(pattern):
            kind = _KINDS.get(obj)
            if kind == "HASH" and not path.startswith("hashes."):
                continue
            if kind and (path == "value" or kind == "HASH"):
                found.append((kind, value.replace("\\'", "'").replace("\\\\", "\\")))
    return list(dict.fromkeys(found))


def _techniques(entry: dict[str, Any]) -> list[str]:
    """ATT&CK technique ids (T1566.001) of the object's references."""
    return [
        str(ref["external_id"]).strip()
        for ref in entry.get("external_references") or []
        if isinstance(ref, dict)
        and ref.get("source_name") == "mitre-attack"
        and isinstance(ref.get("external_id"), str)
        and str(ref["external_id"]).strip()
    ]


def _url(entry: dict[str, Any]) -> str | None:
    for ref in entry.get("external_references") or []:
        if isinstance(ref, dict) and isinstance(ref.get("url"), str):
            return str(ref["url"]).strip() or None
    return None


def _threat(entry: dict[str, Any], kind: str, source: str) -> Threat:
    stix_id = text(entry, "id", required=True)
    assert stix_id is not None
    labels = _strings(entry, "labels")
    types = _strings(entry, f"{kind.replace('-', '_')}_types") if kind != "vulnerability" else []
    pattern = text(entry, "pattern")
    title = text(entry, "name") or (short(pattern, 200) if pattern else f"{kind} {stix_id}")
    return Threat(
        source=source,
        external_id=stix_id,
        title=title,
        description=text(entry, "description"),
        severity=_severity(kind, labels, types),
        category=kind,
        published_at=timestamp(text(entry, "created", required=True), "created"),
        tags=clean_tags(labels + types + _techniques(entry)),
        indicators=_indicators(entry),
        url=_url(entry),
    )
