"""Which requests the whole-operation cache keys: only those the app accepts exactly as an
ordinary request, and never by holding on to what a request sent."""

from __future__ import annotations

import gc
import hashlib
import tracemalloc
import urllib.parse

import httpx
import orjson
import pytest

from cache import Cache
from graph.app import create_app
from graph.settings import Settings
from resolvers.store import Database
from tests.conftest import add, threat_input

TEXT = "{ stats { totalThreats } }"
HASH = hashlib.sha256(TEXT.encode()).hexdigest()
PERSISTED = orjson.dumps({"persistedQuery": {"version": 1, "sha256Hash": HASH}}).decode()
JSON = {"accept": "application/json", "content-type": "application/json"}

# Requests for the cached operation that the app refuses: (name, query string or JSON body).
ODD_GETS = {
    "blank variables": [("query", TEXT), ("variables", "")],
    "blank operationName": [("query", TEXT), ("operationName", "")],
    "blank extensions": [("query", TEXT), ("extensions", "")],
    "blank query after the query": [("query", TEXT), ("query", "")],
    "variables a list": [("query", TEXT), ("variables", "[]")],
    "variables a number": [("query", TEXT), ("variables", "0")],
    "a hash with a blank query": [("extensions", PERSISTED), ("query", "")],
    "an upper case hash": [("extensions", PERSISTED.replace(HASH, HASH.upper()))],
}
ODD_POSTS = {
    "variables a list": {"query": TEXT, "variables": []},
    "variables blank": {"query": TEXT, "variables": ""},
    "variables false": {"query": TEXT, "variables": False},
    "variables zero": {"query": TEXT, "variables": 0},
    "operationName false": {"query": TEXT, "operationName": False},
    "operationName blank": {"query": TEXT, "operationName": ""},
    "operationName a list": {"query": TEXT, "operationName": []},
    "a blank query with its hash": {"query": "", "extensions": orjson.loads(PERSISTED)},
    "a NUL in variables": {"query": TEXT, "variables": {"s": "a\u0000"}},
    "extensions persistedQuery with a number hash": {
        "query": TEXT,
        "extensions": {"persistedQuery": {"sha256Hash": 1}},
    },
}
ODD = [("GET", name) for name in ODD_GETS] + [("POST", name) for name in ODD_POSTS]


@pytest.mark.parametrize(("method", "name"), ODD, ids=[f"{m} {n}" for m, n in ODD])
async def test_an_odd_request_gets_what_the_app_answers_after_the_ordinary_one_is_cached(
    sqlite_db: Database, redis_cache: Cache, method: str, name: str
) -> None:
    await add(sqlite_db, *(threat_input(n) for n in range(1, 4)))
    cached = create_app(Settings(DATABASE_URL=sqlite_db.url), db=sqlite_db, cache=redis_cache)
    plain = create_app(Settings(DATABASE_URL=sqlite_db.url, CACHE_OPERATIONS=False), db=sqlite_db)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=cached), base_url="http://t") as a,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=plain), base_url="http://t") as b,
    ):
        # The ordinary request, both ways, and the hash registered: each is cached.
        await a.post("/graphql", json={"query": TEXT, "extensions": orjson.loads(PERSISTED)})
        for _ in range(2):
            by_get = await a.get("/graphql", params={"query": TEXT}, headers=JSON)
            by_post = await a.post("/graphql", json={"query": TEXT}, headers=JSON)
        assert by_get.headers["x-cache"] == by_post.headers["x-cache"] == "HIT"

        async def send(client: httpx.AsyncClient) -> httpx.Response:
            if method == "GET":
                url = "/graphql?" + urllib.parse.urlencode(ODD_GETS[name])
                return await client.get(url, headers=JSON)
            return await client.post(
                "/graphql", content=orjson.dumps(ODD_POSTS[name]), headers=JSON
            )

        for _ in range(2):  # and again, once it could have been remembered
            got, want = await send(a), await send(b)
            assert want.status_code == 400
            seen = (got.status_code, got.headers.get("content-type"), got.content)
            expected = (want.status_code, want.headers.get("content-type"), want.content)
            assert seen == expected
            assert got.headers.get("x-cache") != "HIT"


async def test_requests_with_huge_headers_leave_nothing_behind(
    sqlite_db: Database, redis_cache: Cache
) -> None:
    """Distinct anonymous queries, each with a 256 KB Accept header: what is kept of them
    (the memo of request keys, the hot operations replayed) does not grow with the header."""
    await add(sqlite_db, threat_input(1))
    app = create_app(Settings(DATABASE_URL=sqlite_db.url), db=sqlite_db, cache=redis_cache)
    headers = {"content-type": "application/json", "accept": "application/json;x=" + "a" * 2**18}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:

        async def send(n: int) -> None:
            body = orjson.dumps({"query": TEXT, "variables": {"n": n}})
            answer = await client.post("/graphql", content=body, headers=headers)
            assert answer.json() == {"data": {"stats": {"totalThreats": 1}}}
            assert answer.headers["x-cache"] == "MISS"  # a cached answer, each under its key

        await send(0)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for n in range(1, 41):
                await send(n)
            gc.collect()
            kept = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    assert kept < 1_000_000  # 40 headers of 256 KB are 10 MB


async def test_a_registration_is_checked_by_the_app_even_when_its_document_is_cached(
    sqlite_db: Database, redis_cache: Cache
) -> None:
    # 20 KB: under the document limit, over the persisted queries' 16 KiB.
    text = "{ stats { totalThreats } }" + "#" + "x" * 20_000
    digest = hashlib.sha256(text.encode()).hexdigest()
    registration = {
        "query": text,
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}},
    }
    app = create_app(Settings(DATABASE_URL=sqlite_db.url), db=sqlite_db, cache=redis_cache)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as a:
        for _ in range(2):
            plain = await a.post("/graphql", json={"query": text}, headers=JSON)
        assert plain.headers["x-cache"] == "HIT"
        refused = await a.post("/graphql", json=registration, headers=JSON)
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_TOO_LARGE"
