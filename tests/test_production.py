"""Every answer in the API's shape and with `nosniff`; `VAJRA_ENV=production` closes what a
developer needs and an attacker wants: introspection, GraphiQL, the API docs; CORS only for
the origins in `CORS_ORIGINS`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from cache import Cache, RedisBackend
from graph.app import create_app
from graph.settings import Settings
from resolvers.store import Database
from tests.conftest import REDIS_URL
from tests.servers import Server, base_env

INTROSPECTION = "{ __schema { queryType { name } } }"


@pytest.fixture
async def app_with(sqlite_db: Database) -> Any:
    clients: list[httpx.AsyncClient] = []

    async def make(**env: str) -> httpx.AsyncClient:
        settings = Settings(DATABASE_URL=sqlite_db.url, CACHE_ENABLED="false", **env)  # type: ignore[arg-type]
        app = create_app(settings, db=sqlite_db)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def code(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["extensions"]["code"])


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "expected"),
    [
        ("GET", "/nowhere", {}, 404, "NOT_FOUND"),
        ("PUT", "/graphql", {}, 405, "METHOD_NOT_ALLOWED"),
        ("DELETE", "/health", {}, 405, "METHOD_NOT_ALLOWED"),
        ("PUT", "/api/cache/clear", {}, 405, "METHOD_NOT_ALLOWED"),
        ("GET", "/api/cache/clear", {}, 405, "METHOD_NOT_ALLOWED"),
        ("POST", "/api/cache/clear?pattern=%00", {}, 403, "FORBIDDEN"),
        ("GET", "/static/dashboard.js", {"range": "bytes=abc"}, 400, "BAD_REQUEST"),
        ("GET", "/static/dashboard.js", {"range": "bytes=5-1"}, 400, "BAD_REQUEST"),
        ("GET", "/static/dashboard.js", {"range": "lines=1-2"}, 400, "BAD_REQUEST"),
        ("GET", "/static/dashboard.js", {"range": "bytes=999999-"}, 416, "RANGE_NOT_SATISFIABLE"),
    ],
)
async def test_every_refusal_is_in_the_api_shape_with_nosniff(
    app_with: Any, method: str, path: str, headers: dict[str, str], status: int, expected: str
) -> None:
    client = await app_with()
    response = await client.request(method, path, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert code(response) == expected
    assert "detail" not in response.json()
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_a_good_range_of_a_static_file_is_still_answered(app_with: Any) -> None:
    client = await app_with()
    response = await client.get("/static/dashboard.js", headers={"range": "bytes=0-9"})
    assert response.status_code == 206
    assert len(response.content) == 10


@pytest.mark.parametrize("environment", ["development", "production"])
async def test_no_answer_points_at_the_host_the_client_named(
    app_with: Any, environment: str
) -> None:
    client = await app_with(VAJRA_ENV=environment)
    for path in ("/graphql/", "/ide", "/health/", "/static", "/docs/"):
        response = await client.get(path, headers={"host": "evil.example"})
        assert not response.is_redirect, (path, response.headers.get("location"))
        assert "evil.example" not in response.text, path


async def test_cached_and_graphql_answers_carry_nosniff(app_with: Any) -> None:
    client = await app_with()
    for _ in range(2):
        response = await client.post("/graphql", json={"query": "{ stats { sources } }"})
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_development_has_introspection_graphiql_and_docs(app_with: Any) -> None:
    client = await app_with()
    body = (await client.post("/graphql", json={"query": INTROSPECTION})).json()
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"
    page = await client.get("/graphql", headers={"accept": "text/html"})
    assert "graphiql" in page.text.lower()
    assert (await client.get("/openapi.json")).status_code == 200


async def test_production_turns_off_introspection_graphiql_and_docs(app_with: Any) -> None:
    client = await app_with(VAJRA_ENV="production")
    response = await client.post("/graphql", json={"query": INTROSPECTION})
    assert code(response) == "GRAPHQL_VALIDATION_FAILED", response.text
    assert "introspection" in response.text.lower()
    typename = await client.post("/graphql", json={"query": "{ __typename }"})
    assert typename.json() == {"data": {"__typename": "Query"}}
    page = await client.get("/graphql", headers={"accept": "text/html"})
    assert "graphiql" not in page.text.lower()
    assert code(page) == "BAD_REQUEST"
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert (await client.get(path)).status_code == 404, path


async def test_cors_answers_only_the_configured_origins(app_with: Any) -> None:
    closed = await app_with()
    preflight = {
        "origin": "https://dash.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    response = await closed.options("/graphql", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    opened = await app_with(CORS_ORIGINS="https://dash.example, https://other.example/")
    response = await opened.options("/graphql", headers=preflight)
    assert response.headers["access-control-allow-origin"] == "https://dash.example"
    evil = await opened.options("/graphql", headers={**preflight, "origin": "https://evil.example"})
    assert "access-control-allow-origin" not in evil.headers
    simple = await opened.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"origin": "https://other.example"}
    )
    assert simple.headers["access-control-allow-origin"] == "https://other.example"


def test_an_unknown_environment_is_refused() -> None:
    with pytest.raises(ValueError, match=r"VAJRA_ENV|environment"):
        Settings(VAJRA_ENV="staging")  # type: ignore[arg-type]
    assert Settings(VAJRA_ENV=" Production ").production  # type: ignore[arg-type]


async def raw_request(port: int, request: bytes) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize(
    ("request_bytes", "status", "expected"),
    [
        (
            b"GET /graphql?query=%7B__typename%7D"
            + b"%20" * 70_000
            + b" HTTP/1.1\r\nHost: t\r\n\r\n",
            414,
            "URI_TOO_LONG",
        ),
        (b"GET / HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n", 400, "BAD_REQUEST"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "BAD_REQUEST"),
    ],
    ids=["url-210k", "bad-header", "garbage"],
)
async def test_what_the_http_server_refuses_is_in_the_api_shape_too(
    tmp_path: Path, request_bytes: bytes, status: int, expected: str
) -> None:
    env = base_env(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'v.db'}", CACHE_ENABLED="false")
    server = Server("raw", env, tmp_path)
    server.start()
    try:
        await server.wait_healthy()
        head, body = await raw_request(server.port, request_bytes)
    finally:
        server.stop()
    assert head.startswith(b"HTTP/1.1 %d" % status), head
    assert b"content-type: application/json" in head.lower()
    assert b"x-content-type-options: nosniff" in head.lower()
    assert orjson.loads(body)["errors"][0]["extensions"]["code"] == expected


async def test_production_health_names_no_redis_address_but_to_the_admin(
    sqlite_db: Database,
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        DATABASE_URL=sqlite_db.url, VAJRA_ENV="production", VAJRA_ADMIN_TOKEN="admin"
    )
    cache = Cache(RedisBackend(REDIS_URL), namespace="prod-health")
    app = create_app(settings, db=sqlite_db, cache=cache)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        anonymous = (await client.get("/health")).json()
        assert "redis_topology" not in anonymous
        assert anonymous["status"] == "ok"
        admin = (await client.get("/health", headers={"authorization": "Bearer admin"})).json()
        assert admin["redis_topology"] == "single"


async def test_production_honours_the_debug_header_for_the_admin_only(
    sqlite_db: Database,
) -> None:
    query = {"query": "{ stats { sources } }"}
    seen = {}
    for environment in ("development", "production"):
        settings = Settings(  # type: ignore[call-arg]
            DATABASE_URL=sqlite_db.url,
            VAJRA_ENV=environment,
            CACHE_DEBUG_HEADER="true",
            VAJRA_ADMIN_TOKEN="admin",
        )
        cache = Cache(RedisBackend(REDIS_URL), namespace="prod-debug")
        app = create_app(settings, db=sqlite_db, cache=cache)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            anyone = await client.post("/graphql", json=query, headers={"x-cache-debug": "1"})
            admin = await client.post(
                "/graphql",
                json=query,
                headers={"x-cache-debug": "1", "authorization": "Bearer admin"},
            )
        seen[environment] = ("extensions" in anyone.json(), "extensions" in admin.json())
        await cache.close()
    assert seen == {"development": (True, True), "production": (False, True)}


@pytest.mark.parametrize(
    ("query", "variables", "suggested"),
    [
        ("{ stats { critic } }", None, "critical"),
        ("{ threats(filter: {severty: [HIGH]}) { total } }", None, "severity"),
        ("{ threats(filter: {severity: [HIHG]}) { total } }", None, "HIGH"),
        (
            "query($f: ThreatFilter) { threats(filter: $f) { total } }",
            {"f": {"severty": ["HIGH"]}},
            "severity",
        ),
    ],
)
@pytest.mark.parametrize("environment", ["development", "production"])
async def test_production_never_suggests_a_name_of_the_schema(
    app_with: Any, query: str, variables: Any, suggested: str, environment: str
) -> None:
    client = await app_with(VAJRA_ENV=environment)
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] in ("GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT")
    if environment == "production":
        assert "Did you mean" not in error["message"]
        assert f"'{suggested}'" not in error["message"]
    else:
        assert "Did you mean" in error["message"]
        assert f"'{suggested}'?" in error["message"]
