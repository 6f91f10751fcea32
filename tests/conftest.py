"""Fixtures: a fresh database per test, on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from redis import asyncio as aioredis
from sqlalchemy import text

from cache import Cache, RedisBackend
from graph.app import create_app
from graph.context import Context, Tokens
from graph.schema import schema
from graph.settings import Settings
from resolvers.ingest import ingest
from resolvers.records import Indicator, IndicatorKind, Severity, ThreatInput
from resolvers.store import Database
from tests.redis_server import RedisServer

NOW = dt.datetime(2026, 3, 14, 15, 9, 26, tzinfo=dt.UTC)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
CRAWLER = "crawler-secret"
ADMIN = "admin-secret"


async def _postgres() -> Database:
    db = Database(POSTGRES_URL)
    try:
        await db.ping()
    except Exception as exc:
        await db.close()
        if IN_CI:
            pytest.fail(f"CI=true but PostgreSQL is unreachable at {POSTGRES_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_URL}: {exc}")
    async with db.engine.begin() as conn:
        for table in (
            "threats",
            "threat_totals",
            "threat_hours",
            "cache_epoch",
            "pending_invalidations",
        ):
            await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    return db


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
    else:
        database = await _postgres()
    await database.create_schema()
    yield database
    await database.close()


@pytest.fixture
async def sqlite_db(tmp_path: Any) -> AsyncIterator[Database]:
    """For tests whose subject is not the database engine."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
    await database.create_schema()
    yield database
    await database.close()


def threat_input(n: int = 1, **overrides: Any) -> ThreatInput:
    values: dict[str, Any] = {
        "source": "nvd",
        "external_id": f"CVE-2026-{1000 + n}",
        "title": f"OpenSSL flaw number {n}",
        "description": f"A flaw in OpenSSL, number {n}.",
        "severity": Severity.HIGH,
        "category": "vulnerability",
        "published_at": NOW - dt.timedelta(hours=n),
        "tags": ["rce"],
        "indicators": [Indicator(IndicatorKind.CVE, f"CVE-2026-{1000 + n}")],
        "url": f"https://nvd.example/{n}",
    }
    values.update(overrides)
    return ThreatInput(**values)


async def add(db: Database, *items: ThreatInput) -> None:
    """Threats in the database before any cache looks (nothing pending for a cache)."""
    outcome = await ingest(db, list(items), now=NOW)
    if outcome.pending is not None:
        await db.settled(outcome.pending)


def context(db: Database, authorization: str | None = None) -> Context:
    return Context(
        db=db,
        tokens=Tokens(crawler=CRAWLER, admin=ADMIN),
        authorization=authorization,
        clock=lambda: NOW,
    )


Execute = Callable[..., Awaitable[Any]]


@pytest.fixture
def execute(db: Database) -> Execute:
    """Run an operation through the schema; asserts nothing about errors."""

    async def run(
        query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> Any:
        auth = f"Bearer {token}" if token else None
        return await schema.execute(
            query, variable_values=variables, context_value=context(db, auth)
        )

    return run


@pytest.fixture
async def client(sqlite_db: Database) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        VAJRA_CRAWLER_TOKEN=CRAWLER, VAJRA_ADMIN_TOKEN=ADMIN, DATABASE_URL=sqlite_db.url
    )
    app = create_app(settings, db=sqlite_db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def _unavailable(what: str, why: object) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but {what}: {why}")
    pytest.skip(f"{what}: {why}")


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    """The shared Redis at TEST_REDIS_URL; tests keep to their own namespace in it."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        _unavailable(f"Redis is unreachable at {REDIS_URL}", exc)
    yield client
    await client.aclose()


@contextlib.asynccontextmanager
async def real_redis_cache(**options: Any) -> AsyncIterator[Cache]:
    """A cache on the real Redis, in a namespace of its own that is removed afterwards."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        _unavailable(f"Redis is unreachable at {REDIS_URL}", exc)
    namespace = "test-" + secrets.token_hex(4)
    cache = Cache(RedisBackend(REDIS_URL), namespace=namespace, schema_version="t", **options)
    try:
        yield cache
    finally:
        async for key in client.scan_iter(match=f"{namespace}:*", count=1000):
            await client.unlink(key)
        await client.aclose()
        await cache.close()


@pytest.fixture
async def redis_cache() -> AsyncIterator[Cache]:
    async with real_redis_cache() as cache:
        yield cache


@pytest.fixture
def redis_server(tmp_path: Any) -> Any:
    """A redis-server of this test's own, to kill, pause and restart."""
    if shutil.which("redis-server") is None:
        _unavailable("redis-server is not on PATH", "install Redis")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
