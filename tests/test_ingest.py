"""`ingestThreats`: upsert by natural key, all or nothing."""

from __future__ import annotations

from typing import Any

from resolvers.store import Database
from tests.conftest import CRAWLER, Execute

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


def test_the_fast_input_path_builds_what_strawberrys_own_conversion_builds() -> None:
    """ThreatInput skips Strawberry's generic argument conversion (graph/types.py): both must
    give the same value, with every optional field given or left out."""
    from graphql import coerce_input_value
    from strawberry.types.arguments import convert_argument

    from graph.schema import schema
    from graph.types import ThreatInput

    full = crawled(1, tags=["x"], indicators=[{"kind": "IP", "value": "10.0.0.1"}])
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
