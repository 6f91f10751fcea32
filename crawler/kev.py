"""CISA's Known Exploited Vulnerabilities catalog (JSON) onto threats.

Every entry is a vulnerability exploited in the wild, so none is below HIGH; the catalog has
no score, and one known to be used in ransomware campaigns is CRITICAL.
"""

from __future__ import annotations

import re
from typing import Any

from crawler.errors import FeedError
from crawler.threat import BadRecord, Parsed, Rejection, Threat, text, timestamp
from crawler.threat import tags as clean_tags

SOURCE = "cisa-kev"
_URL = re.compile(r"https?://[^\s;]+")


def parse(document: Any, source: str = SOURCE) -> Parsed:
    """Every entry of `vulnerabilities`, mapped or rejected with its reason."""
    if not isinstance(document, dict) or not isinstance(document.get("vulnerabilities"), list):
        raise FeedError("not a KEV catalog: no 'vulnerabilities' list at the top level")
    parsed = Parsed()
    for index, entry in enumerate(document["vulnerabilities"]):
        name = f"vulnerabilities[{index}]"
        try:
            if not isinstance(entry, dict):
                raise BadRecord("is not an object")
            name = text(entry, "cveID") or name
            parsed.threats.append(_threat(entry, source))
        except BadRecord as exc:
            parsed.rejected.append(Rejection(name, str(exc)))
    return parsed


def _threat(entry: dict[str, Any], source: str) -> Threat:
    cve = text(entry, "cveID", required=True)
    assert cve is not None
    vendor = text(entry, "vendorProject")
    product = text(entry, "product")
    title = text(entry, "vulnerabilityName") or " ".join(
        filter(None, [vendor, product, "vulnerability"])
    )
    ransomware = (text(entry, "knownRansomwareCampaignUse") or "").lower() == "known"
    tags = ["known-exploited"] + (["ransomware"] if ransomware else [])
    tags += [t.lower() for t in (vendor, product) if t]
    cwes = entry.get("cwes") or []
    if not isinstance(cwes, list) or not all(isinstance(c, str) for c in cwes):
        raise BadRecord("'cwes' must be a list of strings")
    tags += [c.strip() for c in cwes if c.strip()]
    links = _URL.findall(text(entry, "notes") or "")
    return Threat(
        source=source,
        external_id=cve,
        title=title,
        description=text(entry, "shortDescription"),
        severity="CRITICAL" if ransomware else "HIGH",
        category="vulnerability",
        published_at=timestamp(text(entry, "dateAdded"), "dateAdded"),
        tags=clean_tags(tags),
        indicators=[("CVE", cve)],
        url=links[0] if links else f"https://nvd.nist.gov/vuln/detail/{cve}",
    )
