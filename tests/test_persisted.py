"""Persisted queries are bounded: a size, a count in Redis and in each process, only documents
that validate; or a safelist, and nothing else runs."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import ValidationError
from redis import asyncio as aioredis

from cache import Cache
from graph.app import create_app
from graph.persisted import PersistedQueries, PersistedQueryNotFound
from graph.settings import Settings
from resolvers.store import Database
from tests.test_bad_input import codes
from tests.test_operation_cache import DASHBOARD, persisted

Client = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def serve(sqlite_db: Database, redis_cache: Cache) -> Client:
    @asynccontextmanager
    async def make(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(
            Settings(DATABASE_URL=sqlite_db.url, **settings), db=sqlite_db, cache=redis_cache
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as http:
            yield http

    return make


@pytest.fixture
def stored(redis_client: aioredis.Redis, redis_cache: Cache) -> Callable[[], Any]:
    """The persisted queries this test's namespace holds in Redis: (count, bytes)."""

    async def count() -> tuple[int, int]:
        keys = [k async for k in redis_client.scan_iter(match=redis_cache.keys.persisted("*"))]
        sizes = [await redis_client.strlen(k) for k in keys]
        return len(keys), sum(sizes)

    return count


async def register(http: httpx.AsyncClient, text: str) -> httpx.Response:
    return await http.post("/graphql", json={"query": text, "extensions": persisted(text)})


async def by_hash(http: httpx.AsyncClient, text: str) -> httpx.Response:
    extensions = orjson.dumps(persisted(text)).decode()
    return await http.get("/graphql", params={"extensions": extensions})


async def test_a_10_mb_registration_is_refused_and_nothing_is_stored(
    serve: Client, stored: Callable[[], Any]
) -> None:
    huge = "{ stats { totalThreats } }" + " " * 10_000_000
    async with serve() as http:
        refused = await register(http, huge)
        again = await by_hash(http, huge)
    assert refused.status_code == 400
    assert codes(refused.json()) == ["PERSISTED_QUERY_TOO_LARGE"]
    assert codes(again.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert await stored() == (0, 0)


async def test_a_query_of_the_largest_size_registers_one_byte_more_does_not(
    serve: Client,
) -> None:
    base = "{ stats { totalThreats } }"
    largest = base + " " * (1024 - len(base))
    async with serve(PERSISTED_QUERIES_MAX_BYTES=1024) as http:
        assert "errors" not in (await register(http, largest)).json()
        assert (await by_hash(http, largest)).json() == {"data": {"stats": {"totalThreats": 0}}}
        assert codes((await register(http, largest + " ")).json()) == ["PERSISTED_QUERY_TOO_LARGE"]


@pytest.mark.parametrize(
    ("document", "code"),
    [("{ nope }", "GRAPHQL_VALIDATION_FAILED"), ("{ stats {", "GRAPHQL_PARSE_FAILED")],
)
async def test_a_document_that_does_not_validate_is_not_registered(
    serve: Client, stored: Callable[[], Any], document: str, code: str
) -> None:
    async with serve() as http:
        assert codes((await register(http, document)).json()) == [code]
        assert codes((await by_hash(http, document)).json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert await stored() == (0, 0)


async def test_a_flood_of_registrations_keeps_redis_bounded(
    serve: Client, stored: Callable[[], Any]
) -> None:
    documents = [f"query Q{n} {{ stats {{ totalThreats }} }}" for n in range(300)]
    async with serve(PERSISTED_QUERIES_MAX=16) as http:
        for text in documents:
            assert "errors" not in (await register(http, text)).json()
        assert "errors" not in (await by_hash(http, documents[-1])).json()
    count, size = await stored()
    assert 0 < count <= 16
    assert size <= 16 * (64 + 1 + max(len(d) for d in documents))


async def test_each_process_keeps_a_bounded_number() -> None:
    queries = PersistedQueries(lambda: None, max_kept=16)
    documents = [f"query Q{n} {{ stats {{ totalThreats }} }}" for n in range(300)]
    for text in documents:
        params = {"query": text, "extensions": persisted(text)}
        await queries.register(await queries.resolve(params))
    assert (await queries.resolve({"extensions": persisted(documents[-1])}))["query"]
    with pytest.raises(PersistedQueryNotFound):
        await queries.resolve({"extensions": persisted(documents[0])})


# -- the safelist ------------------------------------------------------------------------------


LISTED = "query Dashboard { stats { totalThreats } }"


def manifest(path: Path, *bodies: str, wrong: bool = False) -> str:
    operations = [
        {"id": sha(b + "x" if wrong else b), "name": None, "type": "query", "body": b}
        for b in bodies
    ]
    path.write_bytes(
        orjson.dumps(
            {"format": "apollo-persisted-query-manifest", "version": 1, "operations": operations}
        )
    )
    return str(path)


async def test_a_safelist_runs_its_queries_only(
    serve: Client, stored: Callable[[], Any], tmp_path: Path
) -> None:
    path = manifest(tmp_path / "manifest.json", LISTED)
    answer = {"data": {"stats": {"totalThreats": 0}}}
    async with serve(PERSISTED_QUERIES="safelist", PERSISTED_QUERIES_FILE=path) as http:
        assert (await by_hash(http, LISTED)).json() == answer
        assert (await http.post("/graphql", json={"query": LISTED})).json() == answer
        assert (await register(http, LISTED)).json() == answer
        for refused in (
            await http.post("/graphql", json={"query": DASHBOARD}),
            await by_hash(http, DASHBOARD),
            await register(http, DASHBOARD),
        ):
            assert refused.status_code == 400
            assert codes(refused.json()) == ["PERSISTED_QUERY_NOT_IN_LIST"]
    assert await stored() == (0, 0)


def test_a_safelist_needs_a_manifest_that_is_one(sqlite_db: Database, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="PERSISTED_QUERIES_FILE"):
        Settings(PERSISTED_QUERIES="safelist")
    wrong = manifest(tmp_path / "wrong.json", LISTED, wrong=True)
    settings = Settings(
        DATABASE_URL=sqlite_db.url, PERSISTED_QUERIES="safelist", PERSISTED_QUERIES_FILE=wrong
    )
    with pytest.raises(ValueError, match="not the SHA-256 of its body"):
        create_app(settings, db=sqlite_db)
