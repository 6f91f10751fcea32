"""The exported SDL is the contract; schema.graphql must match the code."""

from __future__ import annotations

from pathlib import Path

from graph.schema import export_sdl

ROOT = Path(__file__).resolve().parents[1]


def test_schema_graphql_is_up_to_date() -> None:
    committed = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert committed == export_sdl(), "schema.graphql is stale: run `vajra export-schema`"


def test_the_contract_names_are_served() -> None:
    sdl = export_sdl()
    for line in [
        "threats(page: Int! = 1, limit: Int! = 10, filter: ThreatFilter = null): ThreatPage!",
        "threat(id: ID!): Threat",
        "trend(days: Int! = 10): [TrendPoint!]!",
        "severityBreakdown: [SeverityCount!]!",
        "sourceBreakdown(limit: Int! = 10): [SourceCount!]!",
        "stats: Stats!",
        "ingestThreats(threats: [ThreatInput!]!): IngestResult!",
        "clearCache(pattern: String = null): ClearResult!",
        "scalar DateTime",
        "scalar Date",
    ]:
        assert line in sdl
