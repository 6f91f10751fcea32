"""Fuzzing, bounded: operations generated from the schema (valid ones and ones with one
violation each) and random HTTP requests, against the app. Whatever comes in: never an HTTP
500, never INTERNAL_SERVER_ERROR, never a traceback in a response.

Examples per test: FUZZ_EXAMPLES (default 150); CI runs the default."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import graphql
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema
from hypothesis_graphql import nodes as gql_nodes

from graph.app import create_app
from graph.schema import export_sdl
from graph.settings import Settings
from resolvers.store import Database
from tests.conftest import ADMIN, CRAWLER, add, threat_input

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same examples on every run: a failure is reproducible
)
SCHEMA = export_sdl()


def _string(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[graphql.StringValueNode]:
    return strategy.map(gql_nodes.String)


DATETIMES = st.one_of(
    st.datetimes(
        min_value=dt.datetime(1900, 1, 1),
        max_value=dt.datetime(2100, 1, 1),
        timezones=st.just(dt.UTC),
    ).map(lambda d: d.isoformat()),
    st.text(max_size=30),
)
DATES = st.one_of(st.dates().map(dt.date.isoformat), st.text(max_size=12))
SCALARS = {"DateTime": _string(DATETIMES), "Date": _string(DATES)}


@pytest.fixture
async def http(sqlite_db: Database) -> AsyncIterator[httpx.AsyncClient]:
    await add(sqlite_db, *(threat_input(i) for i in range(1, 4)))
    settings_ = Settings(
        DATABASE_URL=sqlite_db.url, VAJRA_CRAWLER_TOKEN=CRAWLER, VAJRA_ADMIN_TOKEN=ADMIN
    )
    app = create_app(settings_, db=sqlite_db)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://fuzz") as client:
        yield client


def assert_no_server_error(response: httpx.Response, sent: Any) -> None:
    text = response.text
    assert response.status_code < 500, f"{response.status_code} for {sent!r}: {text[:500]}"
    assert "INTERNAL_SERVER_ERROR" not in text, f"for {sent!r}: {text[:500]}"
    assert "Traceback" not in text, f"for {sent!r}: {text[:500]}"


def operations(mode: Mode) -> st.SearchStrategy[str]:
    return from_schema(SCHEMA, custom_scalars=SCALARS, mode=mode).map(str)


async def _send(http: httpx.AsyncClient, query: str) -> None:
    for token in (None, CRAWLER):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await http.post("/graphql", json={"query": query}, headers=headers)
        assert_no_server_error(response, query)


@FUZZ
@given(query=operations(Mode.POSITIVE))
async def test_generated_operations_never_get_a_server_error(
    http: httpx.AsyncClient, query: str
) -> None:
    await _send(http, query)


@FUZZ
@given(query=operations(Mode.NEGATIVE))
async def test_operations_with_one_violation_never_get_a_server_error(
    http: httpx.AsyncClient, query: str
) -> None:
    await _send(http, query)


# Any text a client can put in a header, sent as its UTF-8 bytes.
HEADER_VALUES = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=60).map(
    str.encode
)
ACCEPTS = st.one_of(
    HEADER_VALUES,
    st.sampled_from(
        [
            "application/json",
            "APPLICATION/GRAPHQL-RESPONSE+JSON",
            "text/html, application/graphql-response+json",
            "application/graphql-response+json;q=0.1, application/json;q=0.9",
            "*/*",
            "",
        ]
    ).map(str.encode),
)
CONTENT_TYPES = st.one_of(
    HEADER_VALUES,
    st.sampled_from(
        ["application/json", "application/graphql", "text/plain", "", "multipart/form-data"]
    ).map(str.encode),
)
BODIES = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b'{"query": "{ stats { totalThreats } }"}',
            b'{"query": 1}',
            b'{"query": "{ threat(id: \\"\\u00b2\\") { id } }"}',
            b'{"query": "{ __typename }", "variables": []}',
            b'{"query": "{ __typename }", "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "zz"}}}',
            b"[]",
            b"null",
        ]
    ),
    st.builds(
        lambda name, v: httpx.Request(
            "POST",
            "/",
            json={"query": "query A { __typename }", "operationName": name, "variables": v},
        ).read(),
        st.one_of(st.none(), st.text(max_size=10), st.integers()),
        st.one_of(st.none(), st.lists(st.integers(), max_size=2), st.text(max_size=5)),
    ),
    st.builds(
        lambda q, v: httpx.Request("POST", "/", json={"query": q, "variables": v}).read(),
        st.text(max_size=80),
        st.dictionaries(st.text(max_size=5), st.text(max_size=10), max_size=3),
    ),
)


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    path=st.sampled_from(["/graphql", "/health", "/api/cache/stats", "/api/cache/clear", "/x"]),
    query=st.dictionaries(
        st.sampled_from(["query", "variables", "operationName", "extensions", "pattern"]),
        st.text(max_size=40),
        max_size=3,
    ),
    accept=ACCEPTS,
    content_type=CONTENT_TYPES,
    authorization=st.one_of(st.none(), HEADER_VALUES.map(lambda t: b"Bearer " + t)),
    body=BODIES,
)
async def test_random_http_requests_never_get_a_server_error(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    query: dict[str, str],
    accept: bytes,
    content_type: bytes,
    authorization: bytes | None,
    body: bytes,
) -> None:
    headers: dict[str, bytes] = {"accept": accept, "content-type": content_type}
    if authorization is not None:
        headers["authorization"] = authorization
    response = await http.request(
        method,
        path,
        params=query,
        headers=headers,
        content=body if method not in ("GET", "HEAD") else None,
    )
    assert_no_server_error(response, (method, path, query, headers, body[:100]))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
DOCUMENTS = st.one_of(
    st.sampled_from(
        [
            "query A { __typename }",
            "query A { __typename } query B { stats { totalThreats } }",
            "query($id: ID!) { threat(id: $id) { id title } }",
            "query($f: ThreatFilter) { threats(filter: $f) { total } }",
            "mutation($t: [ThreatInput!]!) { ingestThreats(threats: $t) { inserted } }",
            "{ trend(days: 7) { date count } }",
            # Nullable variables for the arguments with a default: null is refused, coded.
            "query($d: Int) { trend(days: $d) { date } }",
            "query($p: Int = null, $l: Int) { threats(page: $p, limit: $l) { total } }",
            "query($l: Int) { sourceBreakdown(limit: $l) { count } }",
        ]
    ),
    st.text(max_size=40),
    JSON_VALUES,
)


@FUZZ
@given(
    document=DOCUMENTS,
    operation_name=st.one_of(st.none(), st.sampled_from(["A", "B"]), JSON_VALUES),
    variables=st.one_of(
        JSON_VALUES,
        st.fixed_dictionaries({"id": JSON_VALUES}),
        st.fixed_dictionaries({"f": JSON_VALUES}),
        st.fixed_dictionaries({"t": st.lists(JSON_VALUES, max_size=2)}),
        st.fixed_dictionaries({}, optional={"d": JSON_VALUES, "p": JSON_VALUES, "l": JSON_VALUES}),
    ),
    extensions=st.one_of(st.none(), JSON_VALUES),
    method=st.sampled_from(["GET", "POST"]),
)
async def test_random_graphql_requests_never_get_a_server_error(
    http: httpx.AsyncClient,
    document: Any,
    operation_name: Any,
    variables: Any,
    extensions: Any,
    method: str,
) -> None:
    request = {
        "query": document,
        "operationName": operation_name,
        "variables": variables,
        "extensions": extensions,
    }
    headers = {"Authorization": f"Bearer {CRAWLER}"}
    if method == "POST":
        response = await http.post("/graphql", json=request, headers=headers)
    else:
        params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in request.items()}
        response = await http.get("/graphql", params=params, headers=headers)
    assert_no_server_error(response, request)
