"""Every kind of bad input gets a GraphQL error with a code, and writes nothing."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from graphql import GraphQLError, Source, Undefined, is_non_null_type

from graph.errors import log_errors
from graph.schema import schema as strawberry_schema
from resolvers.store import Database
from tests.conftest import ADMIN, CRAWLER
from tests.test_ingest import INGEST, crawled

schema_ = strawberry_schema._schema


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body["errors"]]


async def post(
    client: httpx.AsyncClient, query: str, variables: Any = None, token: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )


@pytest.mark.parametrize(
    "query",
    [
        "{ threats(page: 0) { total } }",
        "{ threats(limit: 0) { total } }",
        "{ threats(limit: 1000) { total } }",
        "{ trend(days: 0) { count } }",
        "{ trend(days: 10000) { count } }",
        "{ sourceBreakdown(limit: 0) { count } }",
        '{ threat(id: "not-a-number") { id } }',
    ],
)
async def test_out_of_range_arguments_are_bad_user_input(
    client: httpx.AsyncClient, query: str
) -> None:
    response = await post(client, query)
    assert response.status_code == 200
    body = response.json()
    assert codes(body) == ["BAD_USER_INPUT"]
    assert (
        "between" in body["errors"][0]["message"]
        or "not a threat id" in body["errors"][0]["message"]
    )


def _defaulted_arguments() -> list[tuple[str, str, str, str]]:
    """(operation, field, argument, type) for every field argument with a default."""
    found = []
    for operation, root in (("query", schema_.query_type), ("mutation", schema_.mutation_type)):
        assert root is not None
        for name, field in root.fields.items():
            for argument, definition in field.args.items():
                if definition.default_value is not Undefined:
                    nullable = str(definition.type).removesuffix("!")
                    found.append((operation, name, argument, nullable))
    return found


@pytest.mark.parametrize(("operation", "field", "argument", "type_"), _defaulted_arguments())
@pytest.mark.parametrize("declared", ["", " = null"])
async def test_a_null_variable_for_a_defaulted_argument_is_a_coded_error_logged_at_info(
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    operation: str,
    field: str,
    argument: str,
    type_: str,
    declared: str,
) -> None:
    # By the spec a nullable variable may feed a non-null argument with a default, and an
    # explicit null then is a field error: BAD_USER_INPUT, not a bug of ours.
    variable = "v" * 15_000
    document = (
        f"{operation}(${variable}: {type_}{declared}) {{ {field}({argument}: ${variable})"
        " { __typename } }"
    )
    with caplog.at_level(logging.INFO, logger="vajra.errors"):
        response = await post(client, document, {} if declared else {variable: None})
    assert response.status_code == 200
    body = response.json()
    definition = schema_.get_type(operation.title()).fields[field].args[argument]  # type: ignore[union-attr]
    if is_non_null_type(definition.type):
        assert codes(body) == ["BAD_USER_INPUT"], body
    else:  # null is the argument's absence; clearCache still wants its token
        assert (codes(body) if "errors" in body else []) in ([], ["UNAUTHENTICATED"]), body
    for record in caplog.records:
        assert record.levelno < logging.ERROR, record.getMessage()[:300]
        assert len(record.getMessage()) < 300
        assert record.exc_info is None


async def test_an_unknown_severity_literal_is_bad_user_input(client: httpx.AsyncClient) -> None:
    body = (await post(client, "{ threats(filter: {severity: [SEVERE]}) { total } }")).json()
    assert codes(body) == ["BAD_USER_INPUT"]
    assert "SEVERE" in body["errors"][0]["message"]


async def test_an_unknown_severity_variable_is_bad_user_input(client: httpx.AsyncClient) -> None:
    query = "query($f: ThreatFilter) { threats(filter: $f) { total } }"
    body = (await post(client, query, {"f": {"severity": ["SEVERE"]}})).json()
    assert codes(body) == ["BAD_USER_INPUT"]


async def test_a_malformed_datetime_is_bad_user_input(
    client: httpx.AsyncClient, sqlite_db: Database
) -> None:
    body = (
        await post(client, INGEST, {"threats": [crawled(1, publishedAt="yesterday")]}, CRAWLER)
    ).json()
    assert codes(body) == ["BAD_USER_INPUT"]
    assert "ISO-8601" in body["errors"][0]["message"]
    literal = (await post(client, '{ threats(filter: {since: "31/12/2025"}) { total } }')).json()
    assert codes(literal) == ["BAD_USER_INPUT"]
    assert await sqlite_db.count() == 0


@pytest.mark.parametrize("since", ["2026-03-14T10:00:00", "2026-03-14", "2026-W11-6T10:00:00Z"])
async def test_a_since_without_a_time_zone_is_bad_user_input(
    client: httpx.AsyncClient, since: str
) -> None:
    """The same rule as publishedAt: a time without an offset means no one instant."""
    query = "query($f: ThreatFilter) { threats(filter: $f) { total } }"
    variable = (await post(client, query, {"f": {"since": since}})).json()
    assert codes(variable) == ["BAD_USER_INPUT"]
    assert "time zone" in variable["errors"][0]["message"]
    literal = (
        await post(client, f'{{ threats(filter: {{since: "{since}"}}) {{ total }} }}')
    ).json()
    assert codes(literal) == ["BAD_USER_INPUT"]


async def test_an_empty_title_is_bad_user_input_and_writes_nothing(
    client: httpx.AsyncClient, sqlite_db: Database
) -> None:
    body = (
        await post(client, INGEST, {"threats": [crawled(1), crawled(2, title="")]}, CRAWLER)
    ).json()
    assert codes(body) == ["BAD_USER_INPUT"]
    assert "title" in body["errors"][0]["message"]
    assert await sqlite_db.count() == 0


async def test_a_two_megabyte_description_is_bad_user_input(
    client: httpx.AsyncClient, sqlite_db: Database
) -> None:
    huge = crawled(1, description="x" * (2 * 1024 * 1024))
    body = (await post(client, INGEST, {"threats": [huge]}, CRAWLER)).json()
    assert codes(body) == ["BAD_USER_INPUT"]
    assert "description" in body["errors"][0]["message"]
    assert await sqlite_db.count() == 0


async def test_more_than_a_thousand_threats_is_bad_user_input(
    client: httpx.AsyncClient, sqlite_db: Database
) -> None:
    batch = [crawled(n) for n in range(1001)]
    body = (await post(client, INGEST, {"threats": batch}, CRAWLER)).json()
    assert codes(body) == ["BAD_USER_INPUT"]
    assert "1000" in body["errors"][0]["message"].replace(",", "")
    assert await sqlite_db.count() == 0


async def test_a_missing_token_is_unauthenticated(
    client: httpx.AsyncClient, sqlite_db: Database
) -> None:
    body = (await post(client, INGEST, {"threats": [crawled(1)]})).json()
    assert codes(body) == ["UNAUTHENTICATED"]
    assert body["data"] is None
    assert await sqlite_db.count() == 0


async def test_a_wrong_token_is_unauthenticated(
    client: httpx.AsyncClient, sqlite_db: Database
) -> None:
    body = (await post(client, INGEST, {"threats": [crawled(1)]}, "guess")).json()
    assert codes(body) == ["UNAUTHENTICATED"]
    assert await sqlite_db.count() == 0


async def test_a_body_that_is_not_json_is_a_bad_request(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert codes(response.json()) == ["BAD_REQUEST"]


async def test_a_json_body_without_a_query_is_a_bad_request(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json=[1, 2])
    assert response.status_code == 400
    assert codes(response.json()) == ["BAD_REQUEST"]
    response = await client.post("/graphql", json={"variables": {}})
    assert codes(response.json()) == ["BAD_REQUEST"]


async def test_a_query_that_does_not_parse_is_a_parse_failure(client: httpx.AsyncClient) -> None:
    body = (await post(client, "{ threats { total ")).json()
    assert codes(body) == ["GRAPHQL_PARSE_FAILED"]
    assert body["errors"][0]["message"].startswith("Syntax Error")


async def test_an_unknown_field_is_a_validation_failure(client: httpx.AsyncClient) -> None:
    body = (await post(client, "{ threats { secrets } }")).json()
    assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"]


async def test_no_error_ever_leaks_a_trace_or_sql(client: httpx.AsyncClient) -> None:
    responses = [
        await post(client, "{ threats(page: 0) { total } }"),
        await post(client, INGEST, {"threats": [crawled(1, title="")]}, ADMIN),
        await client.post(
            "/graphql", content=b"\x00\xff", headers={"content-type": "application/json"}
        ),
    ]
    for response in responses:
        assert response.status_code < 500
        text = response.text
        assert "Traceback" not in text
        assert "SELECT" not in text
        assert "sqlalchemy" not in text


def test_a_logged_traceback_never_holds_more_than_200_characters_of_client_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    document = "{ " + "x" * 20_000 + " }"
    try:
        try:
            raise KeyError("k" * 20_000)
        except KeyError as inner:
            raise ValueError("v" * 20_000) from inner
    except ValueError as exc:
        error = GraphQLError(
            "m" * 20_000, source=Source(document), positions=[2], original_error=exc
        )
    with caplog.at_level(logging.INFO, logger="vajra.errors"):
        log_errors([error])
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    logged = logging.Formatter().format(record)
    for kept in ("Traceback", "ValueError", "KeyError"):
        assert kept in logged
    for client_text in "xvk":
        assert client_text * 201 not in logged
    assert len(logged) < 5_000


async def test_an_unknown_cache_pattern_is_quoted_in_at_most_200_characters(
    client: httpx.AsyncClient,
) -> None:
    query = "mutation($p: String) { clearCache(pattern: $p) { cleared } }"
    pattern = "p" * 100_000
    body = (await post(client, query, {"p": pattern}, ADMIN)).json()
    assert codes(body) == ["BAD_USER_INPUT"]
    message = body["errors"][0]["message"]
    assert "unknown cache pattern 'ppp" in message
    assert "p" * 201 not in message
    assert len(message) < 400
