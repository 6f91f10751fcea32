"""GraphQL over HTTP: methods, media types, GraphiQL, and /health."""

from __future__ import annotations

import httpx

from graph.app import create_app
from graph.settings import Settings
from resolvers.store import Database
from tests.conftest import CRAWLER
from tests.test_bad_input import codes
from tests.test_ingest import INGEST, crawled


async def test_a_query_by_get_is_answered(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", params={"query": "{ stats { totalThreats } }"})
    assert response.status_code == 200
    assert response.json() == {"data": {"stats": {"totalThreats": 0}}}


async def test_get_takes_variables_as_json(client: httpx.AsyncClient) -> None:
    params = {"query": "query($d: Int!) { trend(days: $d) { count } }", "variables": '{"d": 2}'}
    response = await client.get("/graphql", params=params)
    assert len(response.json()["data"]["trend"]) == 2


async def test_a_mutation_by_get_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, sqlite_db: Database
) -> None:
    query = "mutation { ingestThreats(threats: []) { inserted } }"
    response = await client.get(
        "/graphql", params={"query": query}, headers={"Authorization": f"Bearer {CRAWLER}"}
    )
    assert response.status_code == 405
    assert codes(response.json()) == ["METHOD_NOT_ALLOWED"]


async def test_a_browser_gets_graphiql(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_the_graphql_response_media_type_is_answered_when_asked(
    client: httpx.AsyncClient,
) -> None:
    accept = {"accept": "application/graphql-response+json, application/json;q=0.9"}
    ok = await client.post("/graphql", json={"query": "{ stats { sources } }"}, headers=accept)
    assert ok.headers["content-type"] == "application/graphql-response+json"
    assert ok.status_code == 200
    invalid = await client.post("/graphql", json={"query": "{ nope }"}, headers=accept)
    assert invalid.status_code == 400
    assert "data" not in invalid.json()
    # It executed (a field error nulled the result): `data` is there, and the status is 2xx.
    failed = await client.post(
        "/graphql", json={"query": "{ threats(limit: 500) { total } }"}, headers=accept
    )
    assert failed.status_code == 200, failed.text
    assert failed.json()["data"] is None
    assert failed.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    plain = await client.post("/graphql", json={"query": "{ nope }"})
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "application/json"


async def test_a_query_sent_as_application_graphql_is_answered(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        content=b"{ stats { sources } }",
        headers={"content-type": "application/graphql"},
    )
    assert response.json() == {"data": {"stats": {"sources": 0}}}


async def test_a_mutation_by_post_is_answered(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        json={"query": INGEST, "variables": {"threats": [crawled(1)]}},
        headers={"Authorization": f"Bearer {CRAWLER}"},
    )
    assert response.json() == {
        "data": {"ingestThreats": {"inserted": 1, "updated": 0, "unchanged": 0}}
    }


async def test_health_reports_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["database"] == "ok"


async def test_health_reports_an_unreachable_database_as_503(tmp_path: object) -> None:
    broken = Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    app = create_app(Settings(DATABASE_URL=broken.url), db=broken)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        response = await http.get("/health")
    await broken.close()
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"


TWO_OPERATIONS = "query A { stats { high } } query B { stats { critical } }"


async def test_several_operations_without_an_operation_name_are_a_bad_request(
    client: httpx.AsyncClient,
) -> None:
    for response in (
        await client.post("/graphql", json={"query": TWO_OPERATIONS}),
        await client.get("/graphql", params={"query": TWO_OPERATIONS}),
    ):
        assert response.status_code == 400
        assert codes(response.json()) == ["BAD_REQUEST"]
        assert "several operations" in response.json()["errors"][0]["message"]
    named = await client.post("/graphql", json={"query": TWO_OPERATIONS, "operationName": "B"})
    assert named.json() == {"data": {"stats": {"critical": 0}}}


async def test_a_subscription_is_a_bad_request_by_get_or_post(client: httpx.AsyncClient) -> None:
    query = "subscription { stats { high } }"
    for response in (
        await client.post("/graphql", json={"query": query}),
        await client.get("/graphql", params={"query": query}),
    ):
        assert response.status_code == 400
        assert "allow" not in response.headers
        assert codes(response.json()) == ["BAD_REQUEST"]
        assert "subscriptions" in response.json()["errors"][0]["message"]


async def test_head_is_answered_like_get_without_a_body_as_options_advertises(
    client: httpx.AsyncClient,
) -> None:
    allowed = (await client.options("/graphql")).headers["allow"]
    assert {m.strip() for m in allowed.split(",")} == {"GET", "HEAD", "POST"}
    params = {"query": "{ stats { totalThreats } }"}
    got = await client.get("/graphql", params=params)
    head = await client.head("/graphql", params=params)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == str(len(got.content))
