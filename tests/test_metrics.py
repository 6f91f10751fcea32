"""GET /metrics: what one process counts, at the outermost layer; the access log's line; the
whole-operation hit rate counting cacheable operations only."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cache import Cache, RedisBackend
from graph.app import create_app
from graph.cli import _metrics_dir
from graph.metrics import Bounded, family, safe
from graph.pages import DASHBOARD_OPERATION, STATIC
from graph.settings import Settings
from resolvers.store import Database
from tests.conftest import ADMIN, CRAWLER, add, threat_input
from tests.redis_server import RedisServer
from tests.test_ingest import INGEST, crawled

DASH = "query Dash { stats { totalThreats } threats(limit: 2) { total } }"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of the exposition, by name and labels (the parser refuses bad text)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for metric in text_string_to_metric_families(text)
        for sample in metric.samples
    }


async def scrape(http: httpx.AsyncClient) -> Samples:
    answer = await http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(answer.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
async def cache(redis_server: RedisServer) -> AsyncIterator[Cache]:
    own = Cache(RedisBackend(redis_server.url), namespace="m", schema_version="t")
    yield own
    await own.close()


def app_for(db: Database, cache: Cache, **values: Any) -> Any:
    settings = Settings(
        DATABASE_URL=db.url, VAJRA_CRAWLER_TOKEN=CRAWLER, VAJRA_ADMIN_TOKEN=ADMIN, **values
    )
    return create_app(settings, db=db, cache=cache)


@pytest.fixture
async def http(sqlite_db: Database, cache: Cache) -> AsyncIterator[httpx.AsyncClient]:
    await add(sqlite_db, *(threat_input(n) for n in range(1, 4)))
    transport = httpx.ASGITransport(app=app_for(sqlite_db, cache))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def test_a_miss_then_a_hit_are_counted_by_operation_and_cache_status(
    http: httpx.AsyncClient,
) -> None:
    before = await scrape(http)
    first = await http.post("/graphql", json={"query": DASH})
    second = await http.post("/graphql", json={"query": DASH})
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    after = await scrape(http)
    requests = "vajra_http_requests_total"
    assert moved(before, after, requests, path="/graphql", operation="Dash", status="200") == 2
    lookups = "vajra_cache_lookups_total"
    assert moved(before, after, lookups, coordinate="(operation)", result="miss") == 1
    assert moved(before, after, lookups, coordinate="(operation)", result="hit") == 1
    # The fields were computed once: the hit never reached them.
    assert moved(before, after, lookups, coordinate="Query.stats", result="miss") == 1
    assert moved(before, after, lookups, coordinate="Query.stats", result="hit") == 0
    latency = "vajra_http_request_duration_seconds_count"
    for status in ("MISS", "HIT"):
        assert moved(before, after, latency, path="/graphql", operation="Dash", cache=status) == 1
        # Written from tallies into the histogram's buckets and sum (graph/metrics.py flush).
        labels = {"path": "/graphql", "operation": "Dash", "cache": status}
        assert moved(before, after, "vajra_http_request_duration_seconds_sum", **labels) > 0
        inf = moved(
            before, after, "vajra_http_request_duration_seconds_bucket", le="+Inf", **labels
        )
        assert inf == 1
    assert moved(before, after, "vajra_database_queries_total") >= 1
    # The scrape before counts itself in the one after.
    assert moved(before, after, requests, path="/metrics", operation="", status="200") == 1
    assert value(after, "vajra_cache_breaker", state="closed") == 1


async def test_a_mutation_is_a_bypass_and_its_invalidations_count_by_family(
    http: httpx.AsyncClient,
) -> None:
    before = await scrape(http)
    ingest = await http.post(
        "/graphql",
        json={"query": INGEST, "variables": {"threats": [crawled(1)]}},
        headers={"Authorization": f"Bearer {CRAWLER}"},
    )
    assert ingest.status_code == 200
    assert not ingest.json().get("errors")
    after = await scrape(http)
    requests = "vajra_http_requests_total"
    assert moved(before, after, requests, path="/graphql", operation="(anonymous)", status="200")
    lookups = "vajra_cache_lookups_total"
    assert moved(before, after, lookups, coordinate="(operation)", result="bypass") == 1
    assert moved(before, after, lookups, coordinate="(operation)", result="miss") == 0
    invalidations = "vajra_cache_invalidations_total"
    for name in ("threat:any", "threat:source", "threat:category", "threat:id"):
        assert moved(before, after, invalidations, family=name) >= 1, name
    # Never a label per tag: there is no `threat:source=nvd` family.
    assert not [
        k for k in after if k[0] == invalidations and ("family", "threat:source=nvd") in k[1]
    ]


async def test_bad_requests_are_labelled_with_their_status_and_no_operation(
    http: httpx.AsyncClient,
) -> None:
    before = await scrape(http)
    assert (await http.post("/graphql", content=b"{not json")).status_code == 400
    invalid = await http.post("/graphql", json={"query": "query Nope { nothing }"})
    assert invalid.json()["errors"]
    assert (await http.get("/no/such/page")).status_code == 404
    after = await scrape(http)
    requests = "vajra_http_requests_total"
    assert moved(before, after, requests, path="/graphql", operation="(none)", status="400") == 1
    # Its name did not validate: not a label.
    assert moved(before, after, requests, path="/graphql", operation="(none)", status="200") == 1
    assert moved(before, after, requests, path="/graphql", operation="Nope", status="200") == 0
    assert moved(before, after, requests, path="other", operation="", status="404") == 1


async def test_operation_names_past_the_limit_are_other(sqlite_db: Database, cache: Cache) -> None:
    app = app_for(sqlite_db, cache, METRICS_MAX_OPERATIONS=2)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        before = await scrape(http)
        for name in ("OneOp", "TwoOp", "ThreeOp", "FourOp"):
            await http.post(
                "/graphql", json={"query": f"query {name} {{ stats {{ totalThreats }} }}"}
            )
        after = await scrape(http)
    requests = "vajra_http_requests_total"
    for name in ("OneOp", "TwoOp"):
        assert moved(before, after, requests, path="/graphql", operation=name, status="200") == 1
    assert moved(before, after, requests, path="/graphql", operation="ThreeOp", status="200") == 0
    assert moved(before, after, requests, path="/graphql", operation="(other)", status="200") == 2


async def test_the_dashboards_operation_is_labelled_whoever_came_first(
    sqlite_db: Database, cache: Cache
) -> None:
    app = app_for(sqlite_db, cache, METRICS_MAX_OPERATIONS=2)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        before = await scrape(http)
        for name in ("Fill1", "Fill2", "Fill3", DASHBOARD_OPERATION):
            await http.post(
                "/graphql", json={"query": f"query {name} {{ stats {{ totalThreats }} }}"}
            )
        after = await scrape(http)
    requests = "vajra_http_requests_total"
    labelled = moved(
        before, after, requests, path="/graphql", operation=DASHBOARD_OPERATION, status="200"
    )
    assert labelled == 1
    assert f'operationName: "{DASHBOARD_OPERATION}"' in (STATIC / "api.js").read_text()


async def test_redis_errors_and_the_open_breaker_are_counted(
    http: httpx.AsyncClient, redis_server: RedisServer
) -> None:
    await http.post("/graphql", json={"query": DASH})
    before = await scrape(http)
    redis_server.stop()
    for n in range(5):  # new operations: each goes to Redis, until the breaker opens
        answer = await http.post(
            "/graphql", json={"query": f"query Q{n} {{ stats {{ totalThreats }} }}"}
        )
        assert answer.status_code == 200
    after = await scrape(http)
    assert moved(before, after, "vajra_cache_backend_errors_total") >= 1
    assert value(after, "vajra_cache_breaker", state="open") == 1
    assert value(after, "vajra_cache_breaker", state="closed") == 0


async def test_whole_operation_stats_count_only_cacheable_operations(
    http: httpx.AsyncClient,
) -> None:
    await http.post("/graphql", json={"query": DASH})
    await http.post("/graphql", json={"query": DASH})
    for n in range(3):
        await http.post(
            "/graphql",
            json={"query": INGEST, "variables": {"threats": [crawled(10 + n)]}},
            headers={"Authorization": f"Bearer {CRAWLER}"},
        )
    stats = (await http.get("/api/cache/stats")).json()
    operations = stats["fields"]["(operation)"]
    assert (operations["hits"], operations["misses"], operations["bypasses"]) == (1, 1, 3)
    assert operations["hit_rate"] == 0.5


async def test_the_access_log_line_names_operation_status_cache_and_duration(
    sqlite_db: Database, cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    app = app_for(sqlite_db, cache, VAJRA_ACCESS_LOG=True, LOG_LEVEL="WARNING")
    transport = httpx.ASGITransport(app=app, client=("10.0.0.7", 5000))
    caplog.set_level(logging.INFO, logger="vajra.access")
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        await http.post("/graphql", json={"query": DASH})
        await http.post("/graphql", json={"query": DASH})
        await http.get('/evil%0Aop=Forged "x"\u00e9')
    lines = [r.getMessage() for r in caplog.records if r.name == "vajra.access"]
    assert len(lines) == 3, lines
    assert lines[0].startswith('10.0.0.7 "POST /graphql" op=Dash status=200 cache=MISS ')
    assert lines[1].startswith('10.0.0.7 "POST /graphql" op=Dash status=200 cache=HIT ')
    assert lines[1].endswith("ms")
    float(lines[1].split()[-1].removesuffix("ms"))
    # A client's path cannot start a line of its own nor close the quotes.
    assert lines[2].startswith('10.0.0.7 "GET /evil\\nop=Forged \\"x\\"\\u00e9" op=- status=404')
    assert "\n" not in lines[2]


def test_untrusted_text_is_escaped_and_bounded() -> None:
    assert safe('a\r\nb\x00"\\') == 'a\\r\\nb\\u0000\\"\\\\'
    assert safe("ok /graphql") == "ok /graphql"
    assert len(safe("x" * 10_000)) == 200


def test_labels_are_bounded() -> None:
    bounded = Bounded(2)
    assert [bounded(v) for v in ("a", "b", "c", "a", "d")] == ["a", "b", "(other)", "a", "(other)"]
    reserving = Bounded(2, reserved=["r"])
    assert [reserving(v) for v in ("a", "b", "c", "r")] == ["a", "b", "(other)", "r"]
    assert family("threat:source=nvd") == "threat:source"
    assert family("threat:any") == "threat:any"


def test_vajra_serve_starts_its_workers_on_an_empty_metrics_directory(tmp_path: Path) -> None:
    configured = tmp_path / "metrics"
    configured.mkdir()
    (configured / "counter_1234.db").write_bytes(b"left by an earlier run")
    (configured / "notes.txt").write_text("not ours")
    assert _metrics_dir(str(configured)) == (str(configured), False)
    assert sorted(p.name for p in configured.iterdir()) == ["notes.txt"]
    directory, temporary = _metrics_dir(None)  # none configured: a fresh one, removed after
    assert temporary
    assert not list(Path(directory).iterdir())
    Path(directory).rmdir()


async def test_a_hit_on_an_entry_another_process_stored_knows_its_operation(
    sqlite_db: Database, cache: Cache, redis_server: RedisServer
) -> None:
    other = Cache(RedisBackend(redis_server.url), namespace="m", schema_version="t")
    try:
        first = httpx.ASGITransport(app=app_for(sqlite_db, cache))
        second = httpx.ASGITransport(app=app_for(sqlite_db, other))
        async with httpx.AsyncClient(transport=first, base_url="http://t") as http:
            before = await scrape(http)
            assert (await http.post("/graphql", json={"query": DASH})).headers["x-cache"] == "MISS"
        async with httpx.AsyncClient(transport=second, base_url="http://t") as http:
            answer = await http.post("/graphql", json={"query": DASH})
            assert answer.headers["x-cache"] == "HIT"  # from Redis: this process never ran it
            after = await scrape(http)
    finally:
        await other.close()
    latency = "vajra_http_request_duration_seconds_count"
    assert moved(before, after, latency, path="/graphql", operation="Dash", cache="HIT") == 1
