"""`ingestThreats`: upsert by natural key, all or nothing."""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Any

import pytest

from graph.errors import error_code
from resolvers.errors import InvalidInput
from resolvers.ingest import validate_batch
from resolvers.store import Database
from tests.conftest import CRAWLER, NOW, Execute, threat_input

INGEST = """mutation($threats: [ThreatInput!]!) {
  ingestThreats(threats: $threats) { inserted updated unchanged }
}"""


def crawled(n: int, **overrides: Any) -> dict[str, Any]:
    threat = {
        "source": "nvd",
        "externalId": f"CVE-2026-{n}",
        "title": f"Flaw {n}",
        "severity": "HIGH",
        "category": "vulnerability",
        "publishedAt": "2026-03-14T10:00:00Z",
        "tags": ["rce"],
        "indicators": [{"kind": "CVE", "value": f"CVE-2026-{n}"}],
    }
    threat.update(overrides)
    return threat


async def ingest(execute: Execute, *threats: dict[str, Any]) -> Any:
    return await execute(INGEST, {"threats": list(threats)}, token=CRAWLER)


async def test_new_threats_are_inserted(db: Database, execute: Execute) -> None:
    result = await ingest(execute, crawled(1), crawled(2))
    assert not result.errors
    assert result.data["ingestThreats"] == {"inserted": 2, "updated": 0, "unchanged": 0}
    assert await db.count() == 2


async def test_reingesting_the_same_threat_is_unchanged_not_a_duplicate(
    db: Database, execute: Execute
) -> None:
    await ingest(execute, crawled(1), crawled(2))
    result = await ingest(execute, crawled(1), crawled(2, title="Flaw 2, revised"), crawled(3))
    assert not result.errors
    assert result.data["ingestThreats"] == {"inserted": 1, "updated": 1, "unchanged": 1}
    assert await db.count() == 3
    shown = await execute('{ threats(filter: {search: "revised"}) { total items { title } } }')
    assert shown.data["threats"] == {"total": 1, "items": [{"title": "Flaw 2, revised"}]}


async def test_an_update_to_severity_moves_the_threat_between_filters(
    db: Database, execute: Execute
) -> None:
    await ingest(execute, crawled(1, severity="LOW"))
    await ingest(execute, crawled(1, severity="CRITICAL"))
    counts = await execute("{ stats { totalThreats critical low } }")
    assert counts.data["stats"] == {"totalThreats": 1, "critical": 1, "low": 0}


async def test_the_same_external_id_from_two_sources_is_two_threats(
    db: Database, execute: Execute
) -> None:
    result = await ingest(execute, crawled(1), crawled(1, source="cisa-kev"))
    assert result.data["ingestThreats"]["inserted"] == 2


async def test_one_bad_threat_rejects_the_whole_batch(db: Database, execute: Execute) -> None:
    result = await ingest(execute, crawled(1), crawled(2, title="  "), crawled(3))
    assert result.errors[0].extensions["code"] == "BAD_USER_INPUT"
    assert result.errors[0].extensions["problems"][0]["path"] == "threats[1].title"
    assert await db.count() == 0


async def test_a_repeated_natural_key_in_one_batch_is_refused(
    db: Database, execute: Execute
) -> None:
    result = await ingest(execute, crawled(1), crawled(1, title="again"))
    assert result.errors[0].extensions["code"] == "BAD_USER_INPUT"
    assert await db.count() == 0


async def test_publication_times_keep_their_instant_whatever_the_offset(
    db: Database, execute: Execute
) -> None:
    await ingest(execute, crawled(1, publishedAt="2026-03-14T12:00:00+02:00"))
    shown = await execute("{ threats { items { publishedAt } } }")
    assert shown.data["threats"]["items"] == [{"publishedAt": "2026-03-14T10:00:00Z"}]
    again = await ingest(execute, crawled(1, publishedAt="2026-03-14T10:00:00Z"))
    assert again.data["ingestThreats"]["unchanged"] == 1


def problems(result: Any) -> list[str]:
    assert [error_code(e) for e in result.errors] == ["BAD_USER_INPUT"]
    return [p["path"] for p in result.errors[0].extensions["problems"]]


@pytest.mark.parametrize(
    "published",
    [
        "2026-03-14T10:00:00",  # no offset: a different instant on every server
        "2026-03-14T10:00:00.000",
        "2026-03-14",
        "2026-W11-6T10:00:00Z",
        "2026-073T10:00:00Z",
        "20260314T100000Z",
        "2026-03-14T10:00Z",
        "2026-03-14 10:00:00Z",
        "2026-03-14T10:00:00+0200",
        "2026-03-14T10:00:00Z\n",
    ],
)
async def test_a_publication_time_that_is_not_rfc3339_with_an_offset_writes_nothing(
    db: Database, execute: Execute, published: str
) -> None:
    result = await ingest(execute, crawled(1), crawled(2, publishedAt=published))
    assert result.errors
    assert {error_code(e) for e in result.errors} == {"BAD_USER_INPUT"}
    assert "[1].publishedAt" in result.errors[0].message
    assert "time zone" in result.errors[0].message
    assert await db.count() == 0


@pytest.mark.parametrize(
    "published", ["0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "1970-01-01T00:30:00+01:00"]
)
async def test_a_publication_time_before_1970_is_refused_naming_the_field(
    db: Database, execute: Execute, published: str
) -> None:
    result = await ingest(execute, crawled(1), crawled(2, publishedAt=published))
    assert problems(result) == ["threats[1].publishedAt"]
    assert await db.count() == 0


async def test_the_oldest_nvd_publication_dates_are_taken(db: Database, execute: Execute) -> None:
    # CVE-1999-0095 is published 1988-10-01 in the NVD.
    old = crawled(1, publishedAt="1988-10-01T04:00:00Z")
    result = await ingest(execute, old, crawled(2, publishedAt="1970-01-01T00:00:00Z"))
    assert not result.errors
    assert result.data["ingestThreats"]["inserted"] == 2


def test_a_naive_publication_time_from_python_is_a_problem_not_a_crash() -> None:
    naive = threat_input(1, published_at=dt.datetime(2026, 3, 14, 10))
    with pytest.raises(InvalidInput) as refused:
        validate_batch([naive], NOW)
    assert refused.value.extensions["problems"] == [
        {"path": "threats[0].publishedAt", "message": "must have a time zone"}
    ]


async def test_canonically_equal_external_ids_are_one_threat(
    db: Database, execute: Execute
) -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    await ingest(execute, crawled(1, externalId=composed))
    again = await ingest(execute, crawled(1, externalId=decomposed))
    assert not again.errors
    assert again.data["ingestThreats"] == {"inserted": 0, "updated": 0, "unchanged": 1}
    shown = await execute("{ threats { items { externalId } } }")
    assert shown.data["threats"]["items"] == [{"externalId": composed}]
    both = await ingest(execute, crawled(2, externalId=decomposed), crawled(3, externalId=composed))
    assert problems(both) == ["threats[1]"]
    assert await db.count() == 1


async def test_external_ids_are_stored_in_nfc(db: Database, execute: Execute) -> None:
    await ingest(execute, crawled(1, externalId="A\u030angstr\u00f6m"))
    shown = await execute("{ threats { items { externalId } } }")
    stored = shown.data["threats"]["items"][0]["externalId"]
    assert stored == unicodedata.normalize("NFC", "A\u030angstr\u00f6m") == "\u00c5ngstr\u00f6m"


@pytest.mark.parametrize(
    "external_id",
    [
        " RT-11",
        "RT-11 ",
        "\u00a0RT-11",
        "RT-11\n",
        "RT\t11",
        "RT\x1b[2J11",
        "RT-11\u200b",
        "\u202eRT-11",
        "RT\u202811",
    ],
)
async def test_an_external_id_with_surrounding_space_or_control_characters_is_refused(
    db: Database, execute: Execute, external_id: str
) -> None:
    result = await ingest(execute, crawled(1), crawled(2, externalId=external_id))
    assert problems(result) == ["threats[1].externalId"]
    assert await db.count() == 0


async def test_every_bad_field_of_a_batch_is_named_and_nothing_is_written(
    db: Database, execute: Execute
) -> None:
    result = await ingest(
        execute,
        crawled(1, externalId=" CVE-2026-1 "),
        crawled(2),
        crawled(3, publishedAt="1900-01-01T00:00:00Z", title=""),
        crawled(4, source="NVD", url="ftp://example.test/"),
    )
    assert problems(result) == [
        "threats[0].externalId",
        "threats[2].title",
        "threats[2].publishedAt",
        "threats[3].source",
        "threats[3].url",
    ]
    assert "nothing was written" in result.errors[0].message
    assert await db.count() == 0


def test_the_fast_input_path_builds_what_strawberrys_own_conversion_builds() -> None:
    """ThreatInput skips Strawberry's generic argument conversion (graph/types.py): both must
    give the same value, with every optional field given or left out."""
    from graphql import coerce_input_value
    from strawberry.types.arguments import convert_argument

    from graph.schema import schema
    from graph.types import ThreatInput

    full = crawled(1, tags=["x"], indicators=[{"kind": "IP", "value": "10.0.0.1"}])
    full.update(externalId="cafe\u0301", publishedAt="2026-03-14T12:00:00.5+02:00")
    full.update(description="d", url="https://example.test/1")
    bare = {k: v for k, v in crawled(2).items() if k not in ("description", "tags", "url")}
    graphql_type = schema._schema.get_type("ThreatInput")
    definition = ThreatInput.__strawberry_definition__  # type: ignore[attr-defined]
    fast = definition.from_input
    registry, config = schema.schema_converter.scalar_registry, schema.config
    for given in (full, bare):
        value = coerce_input_value(given, graphql_type)  # type: ignore[arg-type]
        quick = convert_argument(value, ThreatInput, registry, config)
        try:
            definition.from_input = None
            generic = convert_argument(value, ThreatInput, registry, config)
        finally:
            definition.from_input = fast
        assert quick == generic
        assert isinstance(quick, ThreatInput)
