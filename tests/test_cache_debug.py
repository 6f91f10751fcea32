"""Internals are the admin's: X-Cache-Debug, the tags in the cache stats; x-cache-node only
when asked for. Anyone else's debug header is ignored, and skips nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest

from cache import Cache
from graph.app import create_app
from graph.settings import Settings
from resolvers.store import Database
from tests.conftest import ADMIN, CRAWLER, add, threat_input
from tests.test_ingest import INGEST, crawled

QUERY = {"query": "{ stats { totalThreats } trend(days: 2) { count } }"}
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}

Client = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def serve(sqlite_db: Database, redis_cache: Cache) -> Client:
    @asynccontextmanager
    async def make(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
        await add(sqlite_db, threat_input(1))
        options = {"VAJRA_CRAWLER_TOKEN": CRAWLER, "VAJRA_ADMIN_TOKEN": ADMIN, **settings}
        app = create_app(
            Settings(DATABASE_URL=sqlite_db.url, **options), db=sqlite_db, cache=redis_cache
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as http:
            yield http

    return make


async def test_anyones_debug_header_is_ignored_and_skips_no_cache(serve: Client) -> None:
    async with serve() as http:
        await http.post("/graphql", json=QUERY)
        for value in ("1", "yes", ""):
            response = await http.post("/graphql", json=QUERY, headers={"X-Cache-Debug": value})
            assert response.headers.get("x-cache") == "HIT", value
            assert "extensions" not in response.json()
        wrong = {"X-Cache-Debug": "1", "Authorization": f"Bearer {CRAWLER}"}
        response = await http.post("/graphql", json=QUERY, headers=wrong)
        assert response.headers.get("x-cache") == "HIT"
        assert "extensions" not in response.json()


async def test_the_admins_debug_header_reports_every_field_and_is_never_stored(
    serve: Client,
) -> None:
    async with serve() as http:
        for _ in range(2):
            debug = await http.post(
                "/graphql", json=QUERY, headers={"X-Cache-Debug": "1", **AS_ADMIN}
            )
            assert "x-cache" not in debug.headers
            assert debug.headers["cache-control"] == "no-store"
            paths = sorted(r["path"] for r in debug.json()["extensions"]["cache"])
            assert paths == [["stats"], ["trend"]]
        for _ in range(2):
            plain = await http.post("/graphql", json=QUERY)
            assert "extensions" not in plain.json()
        assert plain.headers["x-cache"] == "HIT"


async def test_a_development_server_honours_anyones_debug_header(serve: Client) -> None:
    async with serve(CACHE_DEBUG_HEADER=True) as http:
        debug = await http.post("/graphql", json=QUERY, headers={"X-Cache-Debug": "1"})
    assert debug.json()["extensions"]["cache"]


async def test_the_node_header_is_sent_only_when_asked_for(serve: Client) -> None:
    async with serve() as http:
        answers = [await http.post("/graphql", json=QUERY) for _ in range(2)]
        answers.append(await http.post("/graphql", json={"query": "{ nope }"}))
    assert [a.headers.get("x-cache") for a in answers] == ["MISS", "HIT", None]
    assert all("x-cache-node" not in a.headers for a in answers)
    async with serve(CACHE_NODE_HEADER=True) as http:
        answers = [await http.post("/graphql", json=QUERY) for _ in range(2)]
        answers.append(await http.post("/graphql", json={"query": "{ nope }"}))
    assert all(a.headers["x-cache-node"] for a in answers)


async def test_the_tags_invalidated_are_the_admins_and_the_counts_anyones(serve: Client) -> None:
    async with serve() as http:
        await http.post(
            "/graphql",
            json={"query": INGEST, "variables": {"threats": [crawled(7)]}},
            headers={"Authorization": f"Bearer {CRAWLER}"},
        )
        anyone = (await http.get("/api/cache/stats")).json()
        admin = (await http.get("/api/cache/stats", headers=AS_ADMIN)).json()
        stats = {"query": "{ cacheStats { hits invalidations { tag count } } }"}
        graph_anyone = (await http.post("/graphql", json=stats)).json()
        graph_admin = (await http.post("/graphql", json=stats, headers=AS_ADMIN)).json()
    assert "invalidations" not in anyone
    assert {"status", "enabled", "total_keys", "hits", "misses", "hit_rate", "fields"} <= set(
        anyone
    )
    assert admin["invalidations"]["threat:any"] == 1
    assert graph_anyone["data"] == {"cacheStats": {"hits": anyone["hits"], "invalidations": None}}
    assert [e["extensions"]["code"] for e in graph_anyone["errors"]] == ["UNAUTHENTICATED"]
    assert {"tag": "threat:any", "count": 1} in graph_admin["data"]["cacheStats"]["invalidations"]
