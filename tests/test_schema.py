"""The exported SDL is the contract; schema.graphql must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from graph.schema import export_sdl

ROOT = Path(__file__).resolve().parents[1]


def test_schema_graphql_is_up_to_date() -> None:
    committed = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert committed == export_sdl(), "schema.graphql is stale: run `vajra export-schema`"


def _undescribed(sdl: str) -> str:
    """The SDL without its descriptions, each field's arguments back on one line."""
    sdl = re.sub(r'\s*"""[^"]*"""', "", sdl)
    sdl = re.sub(r"\(\s+", "(", sdl)
    sdl = re.sub(r"\s+\)", ")", sdl)
    return re.sub(r"(?<=[^(])\n\s+(?=[a-z]\w*: )", ", ", sdl)


def test_the_contract_names_are_served() -> None:
    sdl = _undescribed(export_sdl())
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


def test_every_type_field_and_argument_of_the_contract_is_described() -> None:
    """GraphiQL's docs pane is the contract's documentation: nothing in it may be blank."""
    from graphql import GraphQLEnumType, GraphQLInputObjectType, GraphQLObjectType

    from graph.schema import schema

    blank = []
    for name, kind in schema._schema.type_map.items():
        if name.startswith("__") or name in ("String", "Int", "Float", "Boolean", "ID"):
            continue
        if not kind.description:
            blank.append(name)
        if isinstance(kind, GraphQLObjectType | GraphQLInputObjectType):
            for field_name, field in kind.fields.items():
                if not field.description:
                    blank.append(f"{name}.{field_name}")
                for arg_name, arg in getattr(field, "args", {}).items():
                    if not arg.description:
                        blank.append(f"{name}.{field_name}({arg_name})")
        elif not isinstance(kind, GraphQLEnumType):
            continue
    assert blank == []
