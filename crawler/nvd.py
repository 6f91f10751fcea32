"""The NVD CVE API 2.0 (one page of `/rest/json/cves/2.0`, or a saved file of one) onto threats.

A CVE has no title: the title is its id and the start of its English description. Severity is
the CVSS base severity of the newest scheme present (v4.0, v3.1, v3.0, v2), the NVD's own
(Primary) score first; a CVE nobody has scored yet is INFO, tagged `unscored`.
"""

from __future__ import annotations

from typing import Any

from crawler.errors import FeedError
from crawler.threat import SEVERITIES, BadRecord, Parsed, Rejection, Threat, short, text, timestamp
from crawler.threat import tags as clean_tags

SOURCE = "nvd"
_METRICS = ("cvssMetricV40", "cvssMetricV31", "cvssMetricV30", "cvssMetricV2")
_NO_CWE = {"NVD-CWE-Other", "NVD-CWE-noinfo"}


def parse(document: Any, source: str = SOURCE) -> Parsed:
    """Every `vulnerabilities[].cve`; REJECTED CVEs are skipped, not sent."""
    if not isinstance(document, dict) or not isinstance(document.get("vulnerabilities"), list):
        raise FeedError("not an NVD CVE API 2.0 answer: no 'vulnerabilities' list at the top level")
    parsed = Parsed()
    for index, entry in enumerate(document["vulnerabilities"]):
        name = f"vulnerabilities[{index}]"
        try:
            cve = entry.get("cve") if isinstance(entry, dict) else None
            if not isinstance(cve, dict):
                raise BadRecord("has no 'cve' object")
            name = text(cve, "id") or name
            if (text(cve, "vulnStatus") or "").lower() == "rejected":
                parsed.skipped.append(Rejection(name, "the CVE is REJECTED in the NVD"))
                continue
            parsed.threats.append(_threat(cve, source))
        except BadRecord as exc:
            parsed.rejected.append(Rejection(name, str(exc)))
    return parsed


def _english(cve: dict[str, Any]) -> str | None:
    descriptions = cve.get("descriptions") or []
    if not isinstance(descriptions, list):
        raise BadRecord("'descriptions' must be a list")
    texts = [d for d in descriptions if isinstance(d, dict) and isinstance(d.get("value"), str)]
    english = [d["value"] for d in texts if d.get("lang") == "en"] or [d["value"] for d in texts]
    return english[0].strip() if english and english[0].strip() else None


def _severity(cve: dict[str, Any]) -> str | None:
    metrics = cve.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise BadRecord("'metrics' must be an object")
    for scheme in _METRICS:
        scored = [m for m in metrics.get(scheme) or [] if isinstance(m, dict)]
        scored.sort(key=lambda m: m.get("type") != "Primary")
        for metric in scored:
            data = metric.get("cvssData") or {}
            # v2 keeps baseSeverity beside cvssData, the later schemes inside it.
            severity = data.get("baseSeverity") or metric.get("baseSeverity")
            if isinstance(severity, str):
                severity = severity.upper()
                if severity == "NONE":
                    return "INFO"
                if severity in SEVERITIES:
                    return severity
    return None


def _weaknesses(cve: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for weakness in cve.get("weaknesses") or []:
        described = weakness.get("description") if isinstance(weakness, dict) else None
        for d in described or []:
            value = d.get("value") if isinstance(d, dict) else None
            if isinstance(value, str) and value.strip() and value not in _NO_CWE:
                found.append(value.strip())
    return found


def _threat(cve: dict[str, Any], source: str) -> Threat:
    cve_id = text(cve, "id", required=True)
    assert cve_id is not None
    description = _english(cve)
    severity = _severity(cve)
    tags = _weaknesses(cve)
    if severity is None:
        tags.append("unscored")
    if cve.get("cisaExploitAdd"):
        tags.append("known-exploited")
    title = text(cve, "cisaVulnerabilityName")
    if title is None:
        title = f"{cve_id}: {short(description, 160)}" if description else cve_id
    return Threat(
        source=source,
        external_id=cve_id,
        title=title,
        description=description,
        severity=severity or "INFO",
        category="vulnerability",
        published_at=timestamp(text(cve, "published"), "published"),
        tags=clean_tags(tags),
        indicators=[("CVE", cve_id)],
        url=f"https://nvd.nist.gov/vuln/detail/{cve_id}",
    )
