"""The whole-operation cache and HTTP caching: hits before routing, Cache-Control, Age, ETag
and 304, persisted queries, and invalidation shared with the field cache."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from redis import asyncio as aioredis

from cache import Cache, RedisBackend
from cache.keying import KEYED_BYTES
from cache.operation import OperationCache
from graph.app import create_app
from graph.settings import Settings
from resolvers.store import Database
from tests.conftest import ADMIN, CRAWLER, add, threat_input
from tests.redis_server import RedisServer
from tests.test_ingest import INGEST, crawled

DASHBOARD = "{ stats { totalThreats } trend(days: 3) { count } threats(limit: 2) { total } }"


@pytest.fixture
async def cache(redis_server: RedisServer) -> AsyncIterator[Cache]:
    own = Cache(RedisBackend(redis_server.url), namespace="o", schema_version="t")
    yield own
    await own.close()


@pytest.fixture
async def http(sqlite_db: Database, cache: Cache) -> AsyncIterator[httpx.AsyncClient]:
    await add(sqlite_db, *(threat_input(n) for n in range(1, 4)))
    settings = Settings(
        DATABASE_URL=sqlite_db.url, VAJRA_CRAWLER_TOKEN=CRAWLER, VAJRA_ADMIN_TOKEN=ADMIN
    )
    app = create_app(settings, db=sqlite_db, cache=cache)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        yield client


async def query(http: httpx.AsyncClient, text: str = DASHBOARD, **headers: str) -> httpx.Response:
    return await http.post("/graphql", json={"query": text}, headers=headers)


async def test_a_repeated_operation_is_answered_whole_with_cache_headers(
    http: httpx.AsyncClient, sqlite_db: Database
) -> None:
    first = await query(http)
    assert first.headers["x-cache"] == "MISS"
    # The smallest max age (stats), and the smallest stale-while-revalidate window.
    assert first.headers["cache-control"] == "max-age=60, public, stale-while-revalidate=30"
    queries = sqlite_db.queries
    second = await query(http)
    assert second.headers["x-cache"] == "HIT"
    assert second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]
    assert int(second.headers["age"]) >= 0
    assert second.headers["content-type"] == "application/json"
    assert sqlite_db.queries == queries


async def test_no_window_is_offered_when_a_field_has_none(http: httpx.AsyncClient) -> None:
    await query(http, '{ stats { totalThreats } threat(id: "1") { id } }')
    again = await query(http, '{ stats { totalThreats } threat(id: "1") { id } }')
    assert again.headers["x-cache"] == "HIT"
    assert again.headers["cache-control"].endswith(", public")  # no window: threat has none


async def test_a_matching_if_none_match_gets_304(http: httpx.AsyncClient) -> None:
    etag = (await query(http)).headers["etag"]
    again = await query(http, **{"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    other = await query(http, **{"If-None-Match": '"something-else"'})
    assert other.status_code == 200


@pytest.mark.parametrize(
    "condition", ["*", '"something-else", {etag}', "W/{etag}", '"a",W/"b" , {etag}']
)
async def test_if_none_match_star_a_list_or_a_weak_tag_matches_the_current_answer(
    http: httpx.AsyncClient, condition: str
) -> None:
    etag = (await query(http)).headers["etag"]
    again = await query(http, **{"If-None-Match": condition.format(etag=etag)})
    assert again.status_code == 304
    assert again.headers["etag"] == etag


async def test_if_none_match_with_only_other_tags_gets_the_answer(
    http: httpx.AsyncClient,
) -> None:
    etag = (await query(http)).headers["etag"]
    other = await query(http, **{"If-None-Match": f'"x", W/"y", {etag[:-2]}"'})
    assert other.status_code == 200
    assert other.headers["etag"] == etag


async def test_a_cacheable_answer_varies_with_accept_and_each_media_type_has_its_own_etag(
    http: httpx.AsyncClient,
) -> None:
    etags = {}
    for accept in ("application/json", "application/graphql-response+json"):
        for expected in ("MISS", "HIT"):
            answer = await http.get(
                "/graphql", params={"query": DASHBOARD}, headers={"accept": accept}
            )
            assert answer.headers["x-cache"] == expected
            assert answer.headers["content-type"] == accept
            vary = [v.strip().lower() for v in answer.headers.get("vary", "").split(",")]
            assert "accept" in vary, (accept, expected, answer.headers)
            etags.setdefault(accept, answer.headers["etag"])
            assert answer.headers["etag"] == etags[accept]
    assert etags["application/json"] != etags["application/graphql-response+json"]
    # A cache holding the JSON answer asks with its tag; the other media type is not it.
    other = await http.get(
        "/graphql",
        params={"query": DASHBOARD},
        headers={
            "accept": "application/graphql-response+json",
            "if-none-match": etags["application/json"],
        },
    )
    assert other.status_code == 200
    assert other.headers["content-type"] == "application/graphql-response+json"


async def test_mutations_errors_and_uncached_fields_are_no_store(http: httpx.AsyncClient) -> None:
    mutation = await http.post(
        "/graphql",
        json={"query": INGEST, "variables": {"threats": [crawled(1)]}},
        headers={"Authorization": f"Bearer {CRAWLER}"},
    )
    assert mutation.headers["cache-control"] == "no-store"
    error = await query(http, "{ threats(page: 0) { total } }")
    assert error.headers["cache-control"] == "no-store"
    uncached = await query(http, "{ stats { totalThreats } cacheStats { hits } }")
    assert uncached.headers["cache-control"] == "no-store"
    assert (await query(http, "{ stats { totalThreats } cacheStats { hits } }")).headers.get(
        "x-cache"
    ) != "HIT"


async def test_a_mutation_makes_the_whole_operation_stale_before_it_returns(
    http: httpx.AsyncClient,
) -> None:
    before = orjson.loads((await query(http)).content)
    assert (await query(http)).headers["x-cache"] == "HIT"
    await http.post(
        "/graphql",
        json={"query": INGEST, "variables": {"threats": [crawled(77)]}},
        headers={"Authorization": f"Bearer {CRAWLER}"},
    )
    after = await query(http)  # a miss, or the replay after the write: fresh either way
    assert (
        after.json()["data"]["stats"]["totalThreats"] == before["data"]["stats"]["totalThreats"] + 1
    )


async def test_variables_and_operation_names_are_part_of_the_key(http: httpx.AsyncClient) -> None:
    text = "query Trend($d: Int!) { trend(days: $d) { count } }"
    two = await http.post("/graphql", json={"query": text, "variables": {"d": 2}})
    three = await http.post("/graphql", json={"query": text, "variables": {"d": 3}})
    assert len(two.json()["data"]["trend"]) == 2
    assert len(three.json()["data"]["trend"]) == 3
    again = await http.post(
        "/graphql", json={"query": text, "variables": {"d": 2}, "operationName": "Trend"}
    )
    assert again.json() == two.json()


def persisted(text: str) -> dict[str, Any]:
    return {
        "persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(text.encode()).hexdigest()}
    }


async def test_persisted_queries_register_then_answer_by_hash_over_get(
    http: httpx.AsyncClient,
) -> None:
    extensions = orjson.dumps(persisted(DASHBOARD)).decode()
    unknown = await http.get("/graphql", params={"extensions": extensions})
    assert unknown.status_code == 200
    assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    registered = await http.post(
        "/graphql", json={"query": DASHBOARD, "extensions": persisted(DASHBOARD)}
    )
    assert "errors" not in registered.json()
    by_hash = await http.get("/graphql", params={"extensions": extensions})
    assert by_hash.json() == registered.json()
    assert by_hash.headers["cache-control"].startswith("max-age=")


async def test_a_persisted_hash_that_does_not_match_its_query_is_refused(
    http: httpx.AsyncClient,
) -> None:
    wrong = await http.post(
        "/graphql", json={"query": DASHBOARD, "extensions": persisted("{ stats { sources } }")}
    )
    assert wrong.status_code == 400
    assert wrong.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "does not match" in wrong.json()["errors"][0]["message"]


async def test_the_local_tier_answers_without_redis_and_hears_other_processes(
    http: httpx.AsyncClient, cache: Cache, redis_server: RedisServer
) -> None:
    await cache.start()
    assert cache._subscriber is not None
    await asyncio.wait_for(cache._subscriber.subscribed.wait(), 5)
    await query(http)
    assert (await query(http)).headers["x-cache"] == "HIT"
    assert len(cache.local) == 1
    other = Cache(RedisBackend(redis_server.url), namespace="o", schema_version="t")
    await other.invalidate(["threat:any"])  # another process ingested
    await other.close()
    async with asyncio.timeout(5):
        while len(cache.local):
            await asyncio.sleep(0.005)
    assert (await query(http)).headers["x-cache"] == "MISS"


async def test_a_lost_subscription_stops_the_local_tier_from_answering(
    cache: Cache, redis_server: RedisServer
) -> None:
    await cache.start()
    assert cache._subscriber is not None
    await asyncio.wait_for(cache._subscriber.subscribed.wait(), 5)
    assert cache.local.trusted
    redis_server.kill()
    async with asyncio.timeout(5):
        while cache.local.trusted:
            await asyncio.sleep(0.01)
    redis_server.start()
    async with asyncio.timeout(10):
        while not cache.local.trusted:
            await asyncio.sleep(0.02)


async def test_an_l2_hit_is_one_round_trip_once_the_process_knows_the_operation(
    sqlite_db: Database, cache: Cache, redis_server: RedisServer
) -> None:
    await add(sqlite_db, threat_input(1))
    settings = Settings(DATABASE_URL=sqlite_db.url)
    client = aioredis.Redis.from_url(redis_server.url)

    async def mgets() -> int:
        stats = await client.info("commandstats")
        return int(stats.get("cmdstat_mget", {}).get("calls", 0))

    writer = create_app(settings, db=sqlite_db, cache=cache)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=writer), base_url="http://t"
    ) as http:
        assert (await query(http)).headers["x-cache"] == "MISS"
    # Another process: no L1 (not subscribed), no memory of this operation yet.
    other = Cache(RedisBackend(redis_server.url), namespace="o", schema_version="t")
    reader = create_app(settings, db=sqlite_db, cache=other)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=reader), base_url="http://t"
    ) as http:
        costs = []
        for _ in range(3):
            before = await mgets()
            assert (await query(http)).headers["x-cache"] == "HIT"
            costs.append(await mgets() - before)
    await other.close()
    await client.aclose()
    assert costs == [2, 1, 1]


async def test_no_whole_operation_hit_is_stale_under_concurrent_mutations(
    http: httpx.AsyncClient, cache: Cache
) -> None:
    await cache.start()
    assert cache._subscriber is not None
    await asyncio.wait_for(cache._subscriber.subscribed.wait(), 5)
    base = (await query(http)).json()["data"]["stats"]["totalThreats"]
    returned = 0
    stale: list[tuple[Any, ...]] = []
    hits = 0
    done = asyncio.Event()

    async def reader() -> None:
        nonlocal hits
        while not done.is_set():
            expected = base + returned
            response = await query(http)
            hits += response.headers.get("x-cache") == "HIT"
            total = response.json()["data"]["stats"]["totalThreats"]
            if total < expected:
                stale.append((total, expected, response.headers["x-cache"]))
            await asyncio.sleep(0)  # a server interleaves requests; so do we

    async def crawler() -> None:
        nonlocal returned
        for n in range(30):
            response = await http.post(
                "/graphql",
                json={"query": INGEST, "variables": {"threats": [crawled(5000 + n)]}},
                headers={"Authorization": f"Bearer {CRAWLER}"},
            )
            assert "errors" not in response.json()
            returned += 1
            await asyncio.sleep(0.005)
        done.set()

    await asyncio.gather(crawler(), *(reader() for _ in range(6)))
    assert stale == []
    assert hits > 0


JSON = "application/json"
JSON_BODY = {"content-type": JSON}
VARIANTS: list[tuple[str, dict[str, str], str]] = [
    # (name, headers, body kind)
    ("plain json", {"accept": JSON, **JSON_BODY}, "json"),
    ("new media type", {"accept": "application/graphql-response+json", **JSON_BODY}, "json"),
    ("upper case", {"accept": "APPLICATION/GRAPHQL-RESPONSE+JSON", **JSON_BODY}, "json"),
    (
        "listed second",
        {"accept": "text/html, application/graphql-response+json", **JSON_BODY},
        "json",
    ),
    (
        "q prefers the new type",
        {"accept": "application/json;q=0.5, application/graphql-response+json;q=0.9", **JSON_BODY},
        "json",
    ),
    (
        "q prefers json",
        {"accept": "application/graphql-response+json;q=0.1, application/json", **JSON_BODY},
        "json",
    ),
    ("no accept", JSON_BODY, "json"),
    # The same Accept as the warm entry's: only the content type differs.
    (
        "json with charset",
        {"accept": JSON, "content-type": "Application/JSON; charset=utf-8"},
        "json",
    ),
    ("text/plain", {"accept": JSON, "content-type": "text/plain"}, "json"),
    ("form", {"accept": JSON, "content-type": "application/x-www-form-urlencoded"}, "json"),
    ("application/graphql", {"accept": JSON, "content-type": "application/graphql"}, "graphql"),
]


@pytest.mark.parametrize("variant", [v[0] for v in VARIANTS])
async def test_every_request_variant_gets_what_the_app_answers_without_the_cache(
    sqlite_db: Database, redis_cache: Cache, variant: str
) -> None:
    await add(sqlite_db, *(threat_input(n) for n in range(1, 4)))
    cached = create_app(Settings(DATABASE_URL=sqlite_db.url), db=sqlite_db, cache=redis_cache)
    plain = create_app(Settings(DATABASE_URL=sqlite_db.url, CACHE_OPERATIONS=False), db=sqlite_db)
    hits = 0
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=cached), base_url="http://t") as a,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=plain), base_url="http://t") as b,
    ):

        async def check(days: int, name: str) -> None:
            nonlocal hits
            _, headers, kind = next(v for v in VARIANTS if v[0] == name)
            text = f"{{ stats {{ totalThreats }} trend(days: {days}) {{ count }} }}"
            body = text.encode() if kind == "graphql" else orjson.dumps({"query": text})
            got = await a.post("/graphql", content=body, headers=headers)
            want = await b.post("/graphql", content=body, headers=headers)
            hits += got.headers.get("x-cache") == "HIT"
            seen = (got.status_code, got.headers.get("content-type"), got.content)
            expected = (want.status_code, want.headers.get("content-type"), want.content)
            assert seen == expected, f"{name} (trend {days}): {seen} != {expected}"

        # A warm entry of either media type first, then the variant; the variant first, on
        # another key, then the others.
        for days, first in ((1, "plain json"), (2, "new media type")):
            for name in (first, first, variant, variant, first):
                await check(days, name)
        for name in (variant, variant, "plain json", "new media type", variant):
            await check(3, name)
    assert hits > 0


async def test_a_browser_opening_a_cached_get_gets_graphiql(http: httpx.AsyncClient) -> None:
    extensions = orjson.dumps(persisted(DASHBOARD)).decode()
    await http.post("/graphql", json={"query": DASHBOARD, "extensions": persisted(DASHBOARD)})
    for _ in range(2):
        by_hash = await http.get("/graphql", params={"extensions": extensions})
    assert by_hash.headers["x-cache"] == "HIT"
    browser = await http.get(
        "/graphql", params={"extensions": extensions}, headers={"accept": "text/html"}
    )
    assert browser.headers["content-type"].startswith("text/html")
    assert "graphiql" in browser.text.lower()


async def test_a_body_too_large_to_be_a_cached_query_goes_to_the_app_unkeyed(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyed: list[int] = []
    original = OperationCache._key

    def counted(self: OperationCache, scope: Any, body: bytes) -> str | None:
        keyed.append(len(body))
        return original(self, scope, body)

    monkeypatch.setattr(OperationCache, "_key", counted)
    padding = {"unused": "x" * KEYED_BYTES}
    text = "query Totals { stats { totalThreats } }"
    for _ in range(2):
        big = await http.post("/graphql", json={"query": text, "variables": padding})
        assert big.json() == {"data": {"stats": {"totalThreats": 3}}}
        assert "x-cache" not in big.headers
    assert keyed == []
    small = await http.post("/graphql", json={"query": text})
    assert small.json() == big.json()
    assert len(keyed) == 1
