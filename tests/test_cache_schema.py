"""The cache behind the real schema: one round trip per warm operation, exact invalidation,
debug output, stats and admin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis import asyncio as aioredis

from cache import Cache, RedisBackend
from graph.app import create_app
from graph.context import Context, Tokens
from graph.schema import schema
from graph.settings import Settings
from resolvers.records import Severity
from resolvers.store import Database
from tests.conftest import ADMIN, CRAWLER, NOW, add, threat_input
from tests.redis_server import RedisServer
from tests.test_ingest import INGEST, crawled

DASHBOARD = """{
  stats { totalThreats high last24h }
  threats(limit: 5) { total items { id title severity } }
  trend(days: 5) { date count }
  severityBreakdown { severity count }
  sourceBreakdown(limit: 5) { source count }
}"""


@pytest.fixture
async def cache(redis_server: RedisServer) -> AsyncIterator[Cache]:
    """A cache on a redis-server of this test's own, so command counts are ours alone."""
    # Refresh off: here what a write makes stale shows as misses (tests/test_refresh.py).
    own = Cache(
        RedisBackend(redis_server.url), namespace="v", schema_version="t", refresh_entries=0
    )
    yield own
    await own.close()


@pytest.fixture
async def commands(redis_server: RedisServer) -> AsyncIterator[Any]:
    """A function returning {command: calls} since the last time it was called."""
    client = aioredis.Redis.from_url(redis_server.url)
    seen: dict[str, int] = {}

    async def since() -> dict[str, int]:
        stats = await client.info("commandstats")
        now = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
        delta = {k: n - seen.get(k, 0) for k, n in now.items() if n != seen.get(k, 0)}
        seen.update(now)
        delta.pop("info", None)
        return delta

    await since()
    yield since
    await client.aclose()


async def run(
    db: Database, cache: Cache, query: str, variables: Any = None, token: str | None = None
) -> Any:
    context = Context(
        db=db,
        tokens=Tokens(crawler=CRAWLER, admin=ADMIN),
        authorization=f"Bearer {token}" if token else None,
        clock=lambda: NOW,
        cache=cache,
        cache_debug=True,
    )
    result = await schema.execute(query, variable_values=variables, context_value=context)
    assert not result.errors, result.errors
    return result


def statuses(result: Any) -> dict[str, str]:
    return {".".join(map(str, r["path"])): r["status"] for r in result.extensions["cache"]}


async def test_a_warm_dashboard_costs_one_redis_round_trip_and_no_query(
    sqlite_db: Database, cache: Cache, commands: Any
) -> None:
    await add(sqlite_db, *(threat_input(n) for n in range(1, 8)))
    cold = await run(sqlite_db, cache, DASHBOARD)
    assert set(statuses(cold).values()) == {"MISS"}
    await commands()
    queries = sqlite_db.queries
    warm = await run(sqlite_db, cache, DASHBOARD)
    assert set(statuses(warm).values()) == {"HIT"}
    assert warm.data == cold.data
    assert await commands() == {"mget": 1}
    assert sqlite_db.queries == queries


async def test_many_threats_by_id_batch_and_only_misses_reach_the_database(
    sqlite_db: Database, cache: Cache, commands: Any
) -> None:
    await add(sqlite_db, *(threat_input(n) for n in range(1, 6)))
    await run(sqlite_db, cache, '{ a: threat(id: "1") { id } b: threat(id: "2") { id } }')
    await commands()
    queries = sqlite_db.queries
    query = "{ " + " ".join(f'x{n}: threat(id: "{n}") {{ id title }}' for n in range(1, 6)) + " }"
    result = await run(sqlite_db, cache, query)
    assert statuses(result) == {"x1": "HIT", "x2": "HIT", "x3": "MISS", "x4": "MISS", "x5": "MISS"}
    assert sqlite_db.queries - queries == 1
    assert (await commands())["mget"] == 1
    assert result.data["x5"]["title"] == "OpenSSL flaw number 5"


async def test_an_ingest_makes_stale_exactly_what_it_changes(
    sqlite_db: Database, cache: Cache
) -> None:
    await add(
        sqlite_db,
        threat_input(1, severity=Severity.LOW, source="otx", external_id="o1", category="malware"),
        threat_input(2, severity=Severity.HIGH),
    )
    reads = """{
      stats { totalThreats } trend(days: 3) { count } severityBreakdown { count }
      sourceBreakdown { count } all: threats { total }
      high: threats(filter: {severity: [HIGH]}) { total }
      nvd: threats(filter: {source: "nvd"}) { total }
      found: threats(filter: {search: "openssl"}) { total }
      low: threats(filter: {severity: [LOW]}) { total }
      otx: threats(filter: {source: "otx"}) { total }
      malware: threats(filter: {category: "malware"}) { total }
      one: threat(id: "1") { id }
      two: threat(id: "2") { title }
    }"""
    await run(sqlite_db, cache, reads)
    ingest = {"threats": [crawled(9, severity="HIGH", source="nvd")]}
    await run(sqlite_db, cache, INGEST, ingest, token=CRAWLER)
    after = await run(sqlite_db, cache, reads)
    assert statuses(after) == {
        "stats": "MISS", "trend": "MISS", "severityBreakdown": "MISS", "sourceBreakdown": "MISS",
        "all": "MISS", "high": "MISS", "nvd": "MISS", "found": "MISS",
        "low": "HIT", "otx": "HIT", "malware": "HIT", "one": "HIT", "two": "HIT",
    }  # fmt: skip
    assert after.data["high"]["total"] == 2
    # An update of threat 2 makes threat(id: "2") stale as well.
    update = {"threats": [crawled(0, externalId="CVE-2026-1002", source="nvd", title="Renamed")]}
    await run(sqlite_db, cache, INGEST, update, token=CRAWLER)
    again = await run(sqlite_db, cache, reads)
    assert statuses(again)["two"] == "MISS"
    assert again.data["two"]["title"] == "Renamed"
    assert statuses(again)["one"] == "HIT"


async def test_an_unchanged_reingest_invalidates_nothing(sqlite_db: Database, cache: Cache) -> None:
    threat = {"threats": [crawled(1)]}
    await run(sqlite_db, cache, INGEST, threat, token=CRAWLER)
    await run(sqlite_db, cache, "{ stats { totalThreats } }")
    await run(sqlite_db, cache, INGEST, threat, token=CRAWLER)
    assert statuses(await run(sqlite_db, cache, "{ stats { totalThreats } }")) == {"stats": "HIT"}


async def test_a_threat_cached_as_missing_appears_once_it_is_ingested(
    sqlite_db: Database, cache: Cache
) -> None:
    assert (await run(sqlite_db, cache, '{ threat(id: "1") { id } }')).data == {"threat": None}
    await run(sqlite_db, cache, INGEST, {"threats": [crawled(1)]}, token=CRAWLER)
    assert (await run(sqlite_db, cache, '{ threat(id: "1") { id } }')).data == {
        "threat": {"id": "1"}
    }


DEBUG = {"X-Cache-Debug": "1", "Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
async def http(sqlite_db: Database, cache: Cache) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        DATABASE_URL=sqlite_db.url, VAJRA_CRAWLER_TOKEN=CRAWLER, VAJRA_ADMIN_TOKEN=ADMIN
    )
    app = create_app(settings, db=sqlite_db, cache=cache)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        yield client


async def test_the_debug_header_reports_each_cached_field(http: httpx.AsyncClient) -> None:
    body = {"query": "{ stats { totalThreats } trend(days: 2) { count } }"}
    plain = (await http.post("/graphql", json=body)).json()
    assert "extensions" not in plain
    debug = (await http.post("/graphql", json=body, headers=DEBUG)).json()
    records = {tuple(r["path"]): r for r in debug["extensions"]["cache"]}
    assert records[("stats",)]["status"] == "HIT"
    assert records[("stats",)]["key"].startswith("v:e:t:0:stats:Query.stats:")
    assert records[("stats",)]["age"] >= 0


async def test_cache_stats_are_served_per_field_by_query_and_endpoint(
    http: httpx.AsyncClient,
) -> None:
    for _ in range(3):  # field by field
        await http.post("/graphql", json={"query": "{ stats { totalThreats } }"}, headers=DEBUG)
    for _ in range(2):  # the first whole-operation lookup misses, the second hits
        await http.post("/graphql", json={"query": "{ stats { totalThreats } }"})
    rest = (await http.get("/api/cache/stats")).json()
    assert rest["fields"]["(operation)"] == {
        "hits": 1,
        "misses": 1,
        "coalesced": 0,
        "stale": 0,
        "bypasses": 0,
        "hit_rate": 0.5,
    }
    assert {"status", "enabled", "total_keys", "hits", "misses", "hit_rate"} <= rest.keys()
    assert rest["status"] == "connected"
    assert rest["enabled"] is True
    # 3 debug requests (1 miss, 2 hits) and the operation miss (a field hit).
    assert rest["fields"]["Query.stats"] == {
        "hits": 3,
        "misses": 1,
        "coalesced": 0,
        "stale": 0,
        "bypasses": 0,
        "hit_rate": 0.75,
    }
    assert rest["total_keys"] >= 1
    graph = (
        await http.post(
            "/graphql",
            json={"query": "{ cacheStats { hits misses hitRate fields { coordinate hits } } }"},
        )
    ).json()
    assert graph["data"]["cacheStats"]["fields"] == [
        {"coordinate": "(operation)", "hits": 1},
        {"coordinate": "Query.stats", "hits": 3},
    ]


async def test_clear_cache_takes_a_known_family_or_nothing(http: httpx.AsyncClient) -> None:
    auth = {"Authorization": f"Bearer {ADMIN}"}
    await http.post("/graphql", json={"query": "{ stats { totalThreats } trend { count } }"})
    family = (
        await http.post(
            "/graphql",
            json={"query": 'mutation { clearCache(pattern: "charts:*") { cleared families } }'},
            headers=auth,
        )
    ).json()
    assert family["data"]["clearCache"] == {"cleared": 1, "families": ["charts"]}
    debug = (
        await http.post(
            "/graphql",
            json={"query": "{ stats { totalThreats } trend { count } }"},
            headers=DEBUG,
        )
    ).json()
    assert [r["status"] for r in debug["extensions"]["cache"]] == ["HIT", "MISS"]
    bad = (
        await http.post(
            "/graphql",
            json={"query": 'mutation { clearCache(pattern: "*:e:*") { cleared } }'},
            headers=auth,
        )
    ).json()
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    everything = await http.post("/api/cache/clear", headers=auth)
    assert everything.json()["families"] == ["stats", "threats", "charts"]
    assert everything.json()["cleared"] == 3  # two field entries, one whole operation
    refused = await http.post(
        "/api/cache/clear?pattern=stats:*", headers={"Authorization": f"Bearer {CRAWLER}"}
    )
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_health_reports_the_redis_cache(http: httpx.AsyncClient, sqlite_db: Database) -> None:
    assert (await http.get("/health")).json()["redis_cache"] == "connected"
    disabled = create_app(Settings(DATABASE_URL=sqlite_db.url, CACHE_ENABLED=False), db=sqlite_db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=disabled), base_url="http://t"
    ) as client:
        assert (await client.get("/health")).json()["redis_cache"] == "disabled"


async def test_a_mutation_costs_the_same_redis_commands_whatever_the_cache_holds(
    sqlite_db: Database, cache: Cache, commands: Any
) -> None:
    """No KEYS, no SCAN: one pipeline of generation bumps, sized by the change, not the cache."""
    await add(sqlite_db, *(threat_input(n) for n in range(1, 4)))
    await run(sqlite_db, cache, "{ stats { totalThreats } }")  # the connection is open

    async def ingest_cost(n: int) -> dict[str, int]:
        await commands()
        await run(sqlite_db, cache, INGEST, {"threats": [crawled(n)]}, token=CRAWLER)
        return await commands()

    small = await ingest_cost(100)
    for first in range(1, 400, 15):  # hundreds more entries, 15 aliases at a time
        ids = " ".join(f't{n}: threat(id: "{n}") {{ id }}' for n in range(first, first + 15))
        await run(sqlite_db, cache, "{ " + ids + " }")
    large = await ingest_cost(101)
    # threat:any, source, category, severity, id; and one message to the other processes
    assert small == large == {"set": 5, "publish": 1}
    assert not {"keys", "scan"} & large.keys()
