"""The three feed formats onto ThreatInput, and what is rejected or skipped before sending."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from crawler import FeedError, Summary, prepare
from crawler.checks import screen
from crawler.command import report
from crawler.threat import Rejection, Threat
from graph.scalars import parse_datetime

DATA = Path(__file__).parent / "data"
NOW = dt.datetime(2026, 3, 14, 15, 0, tzinfo=dt.UTC)


def feed(name: str) -> Any:
    return json.loads((DATA / f"{name}.json").read_text())


def by_id(threats: list[Threat]) -> dict[str, Threat]:
    return {t.external_id: t for t in threats}


def test_kev_entries_are_high_and_critical_when_ransomware_uses_them() -> None:
    threats, summary = prepare(feed("kev"), "kev", now=NOW)
    shown = by_id(threats)
    log4j = shown["CVE-2021-44228"]
    assert log4j.source == "cisa-kev"
    assert log4j.severity == "CRITICAL"
    assert log4j.title == "Apache Log4j2 Remote Code Execution Vulnerability"
    assert log4j.category == "vulnerability"
    assert log4j.published_at == dt.datetime(2021, 12, 10, tzinfo=dt.UTC)
    assert log4j.indicators == [("CVE", "CVE-2021-44228")]
    assert log4j.url == "https://logging.apache.org/log4j/2.x/security.html"
    assert log4j.tags == [
        "known-exploited",
        "ransomware",
        "apache",
        "log4j2",
        "CWE-20",
        "CWE-400",
        "CWE-502",
    ]
    assert shown["CVE-2023-20198"].severity == "HIGH"
    # No notes: the NVD's page is the link.
    assert shown["CVE-2026-0001"].url == "https://nvd.nist.gov/vuln/detail/CVE-2026-0001"
    assert summary.read == 5


def test_kev_records_the_server_would_refuse_are_rejected_with_their_reason() -> None:
    threats, summary = prepare(feed("kev"), "kev", now=NOW)
    assert "CVE-2026-0002" not in by_id(threats)
    reasons = {r.record: r.reason for r in summary.rejected}
    assert reasons == {
        "CVE-2026-0002": "'dateAdded' is not an ISO-8601 date: 'last Tuesday'",
        "CVE-2026-0003": "title must be at most 500 characters",
    }


def test_nvd_severity_is_the_newest_cvss_scheme_and_unscored_is_info() -> None:
    threats, summary = prepare(feed("nvd"), "nvd", now=NOW)
    shown = by_id(threats)
    log4j = shown["CVE-2021-44228"]
    assert log4j.severity == "CRITICAL"  # v3.1 wins over v2's HIGH
    assert log4j.title == "Apache Log4j2 Remote Code Execution Vulnerability"
    assert (log4j.description or "").startswith("Apache Log4j2 2.0-beta9")
    assert log4j.published_at == dt.datetime(2021, 12, 10, 10, 15, 9, 143000, tzinfo=dt.UTC)
    assert log4j.tags == ["CWE-502", "CWE-400", "CWE-917", "known-exploited"]
    assert log4j.url == "https://nvd.nist.gov/vuln/detail/CVE-2021-44228"
    php = shown["CVE-2012-1823"]
    assert php.severity == "HIGH"  # v2 keeps baseSeverity beside cvssData
    assert php.title.startswith("CVE-2012-1823: sapi/cgi/cgi_main.c in PHP")
    assert len(php.title) <= 180
    assert php.title.endswith("…")
    assert php.tags == []  # NVD-CWE-Other is no weakness
    assert shown["CVE-2026-10001"].severity == "INFO"
    assert shown["CVE-2026-10001"].tags == ["unscored"]
    assert not summary.rejected
    assert [(s.record, s.reason) for s in summary.skipped] == [
        ("CVE-2026-10002", "the CVE is REJECTED in the NVD")
    ]


def test_stix_objects_map_by_type_with_indicators_from_their_patterns() -> None:
    threats, summary = prepare(feed("stix"), "stix", now=NOW)
    shown = by_id(threats)
    c2 = shown["indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"]
    assert (c2.source, c2.category, c2.severity) == ("stix", "indicator", "HIGH")
    assert c2.indicators == [("IP", "198.51.100.7"), ("DOMAIN", "c2.example.net")]
    assert c2.published_at == dt.datetime(2026, 3, 10, 16, tzinfo=dt.UTC)
    unnamed = shown["indicator--a932fcc6-e032-476c-826f-cb970a5a1ade"]
    assert unnamed.severity == "MEDIUM"
    assert unnamed.title.startswith("[file:hashes.'SHA-256' = 'aec07")
    assert unnamed.indicators == [
        ("HASH", "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f")
    ]
    malware = shown["malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b"]
    assert malware.severity == "CRITICAL"  # its label says so
    assert malware.url == "https://malware.example/poison-ivy"
    technique = shown["attack-pattern--7e33a43e-e34b-40ec-89da-36c9bb2cacd5"]
    assert "T1566.001" in technique.tags
    vulnerability = shown["vulnerability--0c7b5b88-8ff7-4a4d-aa9d-feb398cd0061"]
    assert vulnerability.indicators == [("CVE", "CVE-2021-44228")]
    assert len(threats) == 5
    assert sorted(s.reason for s in summary.skipped) == [
        "revoked",
        "type identity: not a threat",
        "type relationship: not a threat",
    ]
    assert [r.record for r in summary.rejected] == ["malware--6b616fc1-1505-48e3-8b2c-0d19337bff38"]


@pytest.mark.parametrize(
    ("fmt", "document"),
    [
        ("kev", []),
        ("kev", {"vulnerabilities": "many"}),
        ("nvd", {"resultsPerPage": 0}),
        ("stix", {"type": "report", "objects": []}),
        ("stix", {"type": "bundle", "objects": {}}),
    ],
)
def test_a_document_of_another_shape_is_a_feed_error(fmt: str, document: Any) -> None:
    with pytest.raises(FeedError, match="not a"):
        prepare(document, fmt, now=NOW)


def test_one_malformed_entry_is_rejected_and_the_rest_still_go() -> None:
    document = {
        "vulnerabilities": [
            {"cve": {"id": 7}},
            "text",
            {"cve": {"id": "CVE-1-1", "published": "2026-01-01"}},
        ]
    }
    threats, summary = prepare(document, "nvd", now=NOW)
    assert [t.external_id for t in threats] == ["CVE-1-1"]
    assert [(r.record, r.reason) for r in summary.rejected] == [
        ("vulnerabilities[0]", "'id' must be a string, not int"),
        ("vulnerabilities[1]", "has no 'cve' object"),
    ]


def test_a_repeated_id_a_nul_and_a_future_date_are_caught_before_sending() -> None:
    base = Threat("nvd", "CVE-1", "t", "HIGH", "vulnerability", NOW)
    threats = [
        base,
        Threat("nvd", "CVE-1", "again", "HIGH", "vulnerability", NOW),
        Threat("nvd", "CVE-2", "a\x00b", "HIGH", "vulnerability", NOW),
        Threat("nvd", "CVE-3", "t", "HIGH", "vulnerability", NOW + dt.timedelta(days=3)),
        Threat("nvd", "CVE-4", "t", "HIGH", "vulnerability", NOW, url="ftp://x"),
    ]
    kept, rejected = screen(threats, NOW)
    assert kept == [base]
    assert [(r.record, r.reason) for r in rejected] == [
        ("CVE-1", "the feed has this id more than once; the first one was sent"),
        ("CVE-2", "a text field contains a NUL character"),
        ("CVE-3", "publishedAt must not be more than a day in the future"),
        ("CVE-4", "url must be an http(s) URL"),
    ]


def test_every_feed_sends_publication_times_the_server_takes_as_the_same_instant() -> None:
    """NVD writes no offset and KEV a bare date: both mean UTC, and the crawler says so."""
    for name in ("kev", "nvd", "stix"):
        threats, _ = prepare(feed(name), name, now=NOW)
        assert threats
        for threat in threats:
            sent = threat.to_input()["publishedAt"]
            assert parse_datetime(sent) == threat.published_at, sent
    nvd, _ = prepare(feed("nvd"), "nvd", now=NOW)
    assert all(t.to_input()["publishedAt"].endswith("+00:00") for t in nvd)


@pytest.mark.parametrize("added", ["0001-01-01", "1969-12-31"])
def test_a_feed_date_before_1970_is_rejected_before_sending(added: str) -> None:
    entry = {"cveID": "CVE-1", "vulnerabilityName": "v", "dateAdded": added}
    threats, summary = prepare({"vulnerabilities": [entry]}, "kev", now=NOW)
    assert threats == []
    assert [(r.record, r.reason) for r in summary.rejected] == [
        ("CVE-1", "publishedAt must not be before 1970-01-01T00:00:00Z")
    ]


def test_a_stix_time_that_leaves_the_calendar_in_utc_is_rejected_not_a_crash() -> None:
    bundle = feed("stix")
    first = next(o for o in bundle["objects"] if o.get("type") == "indicator")
    first["created"] = "0001-01-01T00:00:00+01:00"
    _, summary = prepare(bundle, "stix", now=NOW)
    assert (first["id"], "'created' is out of range: '0001-01-01T00:00:00+01:00'") in [
        (r.record, r.reason) for r in summary.rejected
    ]


def test_ids_that_differ_only_in_unicode_composition_are_one_id_to_the_crawler() -> None:
    composed = Threat("nvd", "caf\u00e9", "t", "HIGH", "vulnerability", NOW)
    decomposed = Threat("nvd", "cafe\u0301", "t", "HIGH", "vulnerability", NOW)
    kept, rejected = screen([composed, decomposed], NOW)
    assert kept == [composed]
    assert [r.reason for r in rejected] == [
        "the feed has this id more than once; the first one was sent"
    ]


def test_the_source_can_be_named() -> None:
    threats, _ = prepare(feed("stix"), "stix", source="acme-intel", now=NOW)
    assert {t.source for t in threats} == {"acme-intel"}


def test_feed_text_in_the_summary_is_text_with_control_characters_escaped() -> None:
    summary = Summary(read=1, rejected=[Rejection("CVE-1\x1b[2J", "[bold]title[/bold]\r\nforged")])
    shown = report(summary)
    assert "CVE-1\\x1b[2J: [bold]title[/bold]\\r\\nforged" in shown
    assert "\x1b" not in shown
    assert "\r" not in shown


def test_a_tag_too_long_is_left_out_not_the_record() -> None:
    entry = {"cveID": "CVE-1", "vendorProject": "V" * 65, "product": "p", "dateAdded": "2026-01-01"}
    threats, summary = prepare({"vulnerabilities": [entry]}, "kev", now=NOW)
    assert not summary.rejected
    assert threats[0].tags == ["known-exploited", "p"]
    assert threats[0].title == f"{'V' * 65} p vulnerability"
