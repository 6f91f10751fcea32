"""A document over a limit is refused with a coded error before any resolver runs; what the
dashboard, GraphiQL and the crawler send passes."""

from __future__ import annotations

import contextlib
import gc
import tracemalloc
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import OperationDefinitionNode, get_introspection_query, parse
from graphql.language.lexer import Lexer

import graph.limits
from bench.attacks import dashboards, directives, pages, searches, typenames, unterminated
from bench.harness import DASHBOARD
from cache import Cache
from graph.app import create_app
from graph.limits import Limits, check_variables
from graph.schema import schema
from graph.settings import Settings
from resolvers import dashboard, ingest, threats
from resolvers.store import Database
from tests.conftest import ADMIN, CRAWLER, context
from tests.test_ingest import INGEST, crawled

ROOT = Path(__file__).resolve().parents[1]
# Every limit out of the way; a test puts back the one it is about.
LIFTED = {
    "GRAPHQL_MAX_DOCUMENT_BYTES": 32 * 1024 * 1024,
    "GRAPHQL_MAX_TOKENS": 100_000,
    "GRAPHQL_MAX_DEPTH": 100,
    "GRAPHQL_MAX_ALIASES": 100_000,
    "GRAPHQL_MAX_DIRECTIVES": 100_000,
    "GRAPHQL_MAX_COST": 10**9,
}
FULL_THREAT = (
    "id source externalId title description severity category tags url publishedAt"
    " ingestedAt indicators { kind value }"
)


# The issue's was 11 MB; 9 MB stays under a 10 MiB body cap, so that the document cap answers.
UNTERMINATED = unterminated(9_000_000)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often each resolver function ran."""
    counts: dict[str, int] = {}
    for module, name in [
        (dashboard, "stats"),
        (dashboard, "trend"),
        (dashboard, "severity_breakdown"),
        (dashboard, "source_breakdown"),
        (threats, "list_threats"),
        (ingest, "ingest"),
    ]:
        original = getattr(module, name)

        async def counted(*args: Any, _name: str = name, _f: Any = original, **kw: Any) -> Any:
            counts[_name] = counts.get(_name, 0) + 1
            return await _f(*args, **kw)

        monkeypatch.setattr(module, name, counted)
    return counts


@contextlib.asynccontextmanager
async def client_with(
    db: Database, cache: Cache | None = None, **limits: int
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        VAJRA_CRAWLER_TOKEN=CRAWLER, VAJRA_ADMIN_TOKEN=ADMIN, DATABASE_URL=db.url, **limits
    )
    transport = httpx.ASGITransport(app=create_app(settings, db=db, cache=cache))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def post(
    client: httpx.AsyncClient, query: str, variables: Any = None, **headers: str
) -> httpx.Response:
    return await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )


def refusal(response: httpx.Response) -> dict[str, Any]:
    """The one error of a request refused before it ran, under application/json."""
    assert response.status_code == 200, response.text[:300]
    body = response.json()
    assert body["data"] is None, response.text[:300]
    [error] = body["errors"]
    return dict(error["extensions"])


@pytest.mark.parametrize(
    ("query", "code"),
    [
        pytest.param(pages(10_000), "QUERY_TOO_LARGE", id="10,000 aliases of a 100-threat page"),
        pytest.param(searches(200), "QUERY_TOO_COMPLEX", id="200 aliases searching"),
        pytest.param(dashboards(1_000), "QUERY_TOO_LARGE", id="1,000 dashboards"),
        pytest.param(directives(10_000), "QUERY_TOO_LARGE", id="10,000 directives"),
        pytest.param(typenames(50_000), "QUERY_TOO_LARGE", id="50,000 __typename"),
        pytest.param(UNTERMINATED, "QUERY_TOO_LARGE", id="an unterminated 9 MB query"),
    ],
)
async def test_the_measured_attacks_are_refused_unrun(
    client: httpx.AsyncClient, sqlite_db: Database, calls: dict[str, int], query: str, code: str
) -> None:
    before = sqlite_db.queries
    extensions = refusal(await post(client, query))
    assert extensions["code"] == code
    assert calls == {}
    assert sqlite_db.queries == before


@contextlib.contextmanager
def reading(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """How many tokens the parser read and how many documents were validated."""
    seen = {"tokens": 0, "validated": 0}
    advance, validate = Lexer.advance, graph.limits.validate

    def counted_advance(self: Lexer) -> Any:
        seen["tokens"] += 1
        return advance(self)

    def counted_validate(*args: Any, **kwargs: Any) -> Any:
        seen["validated"] += 1
        return validate(*args, **kwargs)

    monkeypatch.setattr(Lexer, "advance", counted_advance)
    monkeypatch.setattr(graph.limits, "validate", counted_validate)
    yield seen


@pytest.fixture
def coerced(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per operation whose variables graphql-core coerced."""
    import graphql.execution.executor as executor

    seen: list[int] = []
    original = executor.get_variable_values

    def counted(*args: Any, **kwargs: Any) -> Any:
        seen.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(executor, "get_variable_values", counted)
    return seen


class _Unread(list[Any]):
    """A list whose items must not be read: only its length may be."""

    def __iter__(self) -> Any:
        raise AssertionError("the list was read")


FILTERED = "query($f: ThreatFilter) { threats(filter: $f) { total } }"


async def test_a_list_in_the_variables_longer_than_any_argument_takes_is_refused_uncoerced(
    client: httpx.AsyncClient, calls: dict[str, int], coerced: list[int]
) -> None:
    severities = ["CRITICAL"] * 800_000
    extensions = refusal(await post(client, FILTERED, {"f": {"severity": severities}}))
    assert extensions == {
        "code": "BAD_USER_INPUT",
        "limit": "list",
        "maximum": 1_000,
        "found": 800_000,
    }
    assert calls == {}
    assert coerced == []


def test_a_list_over_the_longest_is_refused_by_its_length_unread() -> None:
    operation = parse(FILTERED).definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    refused = check_variables(operation, {"f": {"severity": _Unread([None] * 5_000)}}, Limits())
    assert refused is not None
    assert refused.extensions == {
        "code": "BAD_USER_INPUT",
        "limit": "list",
        "maximum": 1_000,
        "found": 5_000,
    }


async def test_variables_over_the_values_limit_are_refused_uncoerced(
    sqlite_db: Database, calls: dict[str, int], coerced: list[int]
) -> None:
    variables = {"f": {"severity": ["HIGH"] * 999, "source": "nvd"}}  # 1,002 values
    async with client_with(sqlite_db, GRAPHQL_MAX_VARIABLE_VALUES=1_000) as client:
        extensions = refusal(await post(client, FILTERED, variables))
        assert extensions == {"code": "QUERY_TOO_COMPLEX", "limit": "values", "maximum": 1_000}
        assert calls == {}
        assert coerced == []
        variables["f"]["severity"] = ["HIGH"] * 990
        body = (await post(client, FILTERED, variables)).json()
        assert body == {"data": {"threats": {"total": 0}}}


async def test_a_crawlers_batch_is_not_held_to_the_values_limit_of_queries(
    sqlite_db: Database,
) -> None:
    indicators = [{"kind": "URL", "value": f"https://x.test/{i}"} for i in range(200)]
    batch = [crawled(n, indicators=indicators) for n in range(1, 11)]  # 6,000+ values
    async with client_with(sqlite_db, GRAPHQL_MAX_VARIABLE_VALUES=1_000) as client:
        body = (
            await post(client, INGEST, {"threats": batch}, authorization=f"Bearer {CRAWLER}")
        ).json()
    assert body == {"data": {"ingestThreats": {"inserted": 10, "updated": 0, "unchanged": 0}}}


async def test_variables_the_operation_does_not_declare_are_never_counted(
    sqlite_db: Database,
) -> None:
    async with client_with(sqlite_db, GRAPHQL_MAX_VARIABLE_VALUES=1_000) as client:
        body = (await post(client, FILTERED, {"f": None, "other": [[1] * 1_000] * 1_000})).json()
        assert body == {"data": {"threats": {"total": 0}}}


@pytest.mark.parametrize("threats", [1_000, 1_000_000])
@pytest.mark.parametrize(
    ("token", "code"), [(None, "UNAUTHENTICATED"), ("wrong", "UNAUTHENTICATED"), (ADMIN, None)]
)
async def test_a_mutation_without_its_token_is_refused_before_its_variables_are_read(
    client: httpx.AsyncClient,
    calls: dict[str, int],
    coerced: list[int],
    threats: int,
    token: str | None,
    code: str | None,
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await post(client, INGEST, {"threats": [None] * threats}, **headers)
    if code is None:  # the admin may ingest: its batch is then refused for its content
        codes = {e["extensions"]["code"] for e in response.json()["errors"]}
        assert codes == {"BAD_USER_INPUT"}
    else:
        assert refusal(response) == {"code": code}
        assert coerced == []
    assert calls == {}


async def test_a_mutation_needing_another_role_is_forbidden_before_its_variables_are_read(
    client: httpx.AsyncClient, coerced: list[int]
) -> None:
    query = "mutation($p: String) { ... on Mutation { clearCache(pattern: $p) { cleared } } }"
    response = await post(client, query, {"p": "x"}, Authorization=f"Bearer {CRAWLER}")
    assert refusal(response) == {"code": "FORBIDDEN"}
    assert coerced == []


@pytest.mark.parametrize(
    ("query", "lifted"),
    [
        pytest.param(pages(10_000), False, id="10,000 aliases of a page"),
        pytest.param(dashboards(1_000), False, id="1,000 dashboards"),
        pytest.param(directives(10_000), False, id="10,000 directives"),
        pytest.param(typenames(50_000), False, id="50,000 __typename"),
        pytest.param(UNTERMINATED, False, id="an unterminated 9 MB query"),
        pytest.param(directives(10_000), True, id="10,000 directives, no size limit"),
        pytest.param(typenames(50_000), True, id="50,000 __typename, no size limit"),
        pytest.param(pages(10_000), True, id="10,000 aliases, no size limit"),
    ],
)
async def test_the_measured_attacks_are_refused_before_parsing_or_at_the_token_limit(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch, query: str, lifted: bool
) -> None:
    # What froze the loop was parsing and validating the whole document: a document over
    # the size limit is not parsed at all, one under it is read up to the token limit.
    size = {"GRAPHQL_MAX_DOCUMENT_BYTES": LIFTED["GRAPHQL_MAX_DOCUMENT_BYTES"]} if lifted else {}
    async with client_with(sqlite_db, **size) as client:
        with reading(monkeypatch) as seen:
            extensions = refusal(await post(client, query))
    if lifted:
        assert extensions["limit"] == "tokens"
        assert 0 < seen["tokens"] <= Settings().graphql_max_tokens + 1
    else:
        assert extensions["limit"] == "size"
        assert seen["tokens"] == 0
    assert seen["validated"] == 0


@pytest.mark.parametrize(
    ("limit", "setting", "query", "maximum"),
    [
        ("size", "GRAPHQL_MAX_DOCUMENT_BYTES", UNTERMINATED, 32 * 1024),
        ("tokens", "GRAPHQL_MAX_TOKENS", typenames(5_000), 1_000),
        ("aliases", "GRAPHQL_MAX_ALIASES", pages(1_000), 15),
        ("directives", "GRAPHQL_MAX_DIRECTIVES", directives(2_000), 50),
        ("cost", "GRAPHQL_MAX_COST", pages(1_000), 5_000),
        ("cost", "GRAPHQL_MAX_COST", searches(200), 5_000),
        ("cost", "GRAPHQL_MAX_COST", dashboards(100), 5_000),
        ("cost", "GRAPHQL_MAX_COST", typenames(6_000), 5_000),
    ],
)
async def test_each_limit_alone_refuses_its_attack(
    sqlite_db: Database,
    calls: dict[str, int],
    limit: str,
    setting: str,
    query: str,
    maximum: int,
) -> None:
    others = {name: value for name, value in LIFTED.items() if name != setting}
    before = sqlite_db.queries
    async with client_with(sqlite_db, **others) as client:
        extensions = refusal(await post(client, query))
    code = "QUERY_TOO_LARGE" if limit == "size" else "QUERY_TOO_COMPLEX"
    assert extensions["code"] == code
    assert extensions["limit"] == limit
    assert extensions["maximum"] == maximum
    assert extensions.get("found", maximum + 1) > maximum
    assert calls == {}
    assert sqlite_db.queries == before


async def test_depth_counts_fields_from_the_root_to_the_deepest_leaf(
    sqlite_db: Database, calls: dict[str, int]
) -> None:
    query = "{ threats { items { indicators { kind } } } }"  # 4 deep
    async with client_with(sqlite_db, GRAPHQL_MAX_DEPTH=3) as client:
        extensions = refusal(await post(client, query))
    assert extensions == {"code": "QUERY_TOO_COMPLEX", "limit": "depth", "maximum": 3, "found": 4}
    assert calls == {}
    async with client_with(sqlite_db, GRAPHQL_MAX_DEPTH=4) as client:
        assert "errors" not in (await post(client, query)).json()


async def test_a_fragment_spread_many_times_is_measured_once_and_refused(
    client: httpx.AsyncClient, calls: dict[str, int]
) -> None:
    """Forty fragments, each spreading the one before twice: 2^39 aliases in 2 KB."""
    fragments = ["fragment F0 on Query { a: __typename }"] + [
        f"fragment F{k} on Query {{ ...F{k - 1} ...F{k - 1} }}" for k in range(1, 40)
    ]
    extensions = refusal(await post(client, "{ ...F39 } " + " ".join(fragments)))
    assert extensions["limit"] == "aliases"
    assert extensions["found"] == 2**39
    assert calls == {}


async def test_what_the_clients_send_passes_and_eight_dashboards_do_not(
    client: httpx.AsyncClient, sqlite_db: Database
) -> None:
    dashboard_ = (await post(client, DASHBOARD)).json()
    assert "errors" not in dashboard_, dashboard_
    assert dashboard_["data"]["stats"]["totalThreats"] == 0
    introspection = (await post(client, get_introspection_query(descriptions=True))).json()
    assert "errors" not in introspection
    async with client_with(sqlite_db, GRAPHQL_MAX_ALIASES=100) as lenient:
        assert "errors" not in (await post(lenient, dashboards(7))).json()
        extensions = refusal(await post(lenient, dashboards(8)))
    assert extensions["code"] == "QUERY_TOO_COMPLEX"
    assert extensions["limit"] == "cost"


async def test_the_crawlers_batch_passes_in_variables_not_written_inline(
    client: httpx.AsyncClient, sqlite_db: Database
) -> None:
    batch = [crawled(n, publishedAt="2025-01-01T00:00:00Z") for n in range(1_000)]
    auth = {"Authorization": f"Bearer {CRAWLER}"}
    body = (await post(client, INGEST, {"threats": batch}, **auth)).json()
    assert "errors" not in body, str(body)[:300]
    assert body["data"]["ingestThreats"]["inserted"] == 1_000
    inline = INGEST.replace("($threats: [ThreatInput!]!)", "").replace(
        "$threats", "[" + ", ".join(_literal(t) for t in batch) + "]"
    )
    assert refusal(await post(client, inline, **auth))["code"] == "QUERY_TOO_LARGE"
    assert await sqlite_db.count() == 1_000


def _literal(threat: dict[str, Any]) -> str:
    """A crawled threat as a GraphQL input object literal."""

    def value(key: str, v: Any) -> str:
        if isinstance(v, list):
            return "[" + ", ".join(value(key, x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k}: {value(k, x)}" for k, x in v.items()) + "}"
        return v if key in ("severity", "kind") else f'"{v}"'

    return value("", threat)


@pytest.mark.parametrize("variables", [{"n": 100}, {}])
async def test_the_cost_follows_the_variables_of_one_document(
    client: httpx.AsyncClient, calls: dict[str, int], variables: dict[str, int]
) -> None:
    query = f"""query Pages($n: Int = 100) {{
      first: threats(limit: $n) {{ items {{ {FULL_THREAT} }} }}
      second: threats(page: 2, limit: $n) {{ items {{ {FULL_THREAT} }} }}
    }}"""
    assert "errors" not in (await post(client, query, {"n": 50})).json()
    assert calls == {"list_threats": 2}
    extensions = refusal(await post(client, query, variables))
    assert (extensions["limit"], extensions["found"]) == ("cost", 6_602)
    assert calls == {"list_threats": 2}


@pytest.mark.parametrize(
    ("query", "code"),
    [(UNTERMINATED, "QUERY_TOO_LARGE"), (searches(200), "QUERY_TOO_COMPLEX")],
)
async def test_under_the_graphql_media_type_a_refusal_is_a_400_without_data(
    client: httpx.AsyncClient, query: str, code: str
) -> None:
    response = await post(client, query, accept="application/graphql-response+json")
    assert response.status_code == 400
    body = response.json()
    assert "data" not in body
    assert [e["extensions"]["code"] for e in body["errors"]] == [code]


async def test_the_schema_enforces_the_limits_without_http(sqlite_db: Database) -> None:
    before = sqlite_db.queries
    for query, code in [(UNTERMINATED, "QUERY_TOO_LARGE"), (searches(200), "QUERY_TOO_COMPLEX")]:
        result = await schema.execute(query, context_value=context(sqlite_db))
        assert result.data is None
        assert [e.extensions["code"] for e in result.errors or ()] == [code]
    assert sqlite_db.queries == before


@contextlib.contextmanager
def parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    import graph.limits

    seen: list[str] = []
    original = graph.limits.parse

    def counted(source: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(source)
        return original(source, *args, **kwargs)

    monkeypatch.setattr(graph.limits, "parse", counted)
    yield seen


async def test_a_small_document_is_parsed_once_a_big_one_every_time(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = DASHBOARD.replace("query Dashboard", "query ParsedOnce")
    big = '{ threats(filter: {search: "' + "x" * 8_000 + '"}) { total } }'
    with parses(monkeypatch) as seen:
        for query in [small, big] * 3:
            await client.get("/graphql", params={"query": query})
    assert seen.count(small) == 1
    assert seen.count(big) == 3


async def test_distinct_big_get_queries_do_not_stay_in_memory(client: httpx.AsyncClient) -> None:
    assert await kept_by(client) < 600_000


async def test_distinct_big_get_queries_do_not_stay_in_the_operation_cache(
    sqlite_db: Database, redis_cache: Cache
) -> None:
    async with client_with(sqlite_db, redis_cache) as client:
        assert await kept_by(client) < 600_000


async def kept_by(client: httpx.AsyncClient) -> int:
    """Bytes still held after fifty distinct 20 KB GET queries (their search is too
    long for the resolver)."""

    async def send(n: int) -> None:
        query = '{ threats(filter: {search: "' + f"{n:06}" * 3_500 + '"}) { total } }'
        response = await client.get("/graphql", params={"query": query})
        assert refusal(response)["code"] == "BAD_USER_INPUT"

    await send(0)
    urllib.parse.clear_cache()  # the client's cache of the URLs it sent
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(1, 51):
            await send(n)
        urllib.parse.clear_cache()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_a_schema_with_other_limits_serves_the_same_contract() -> None:
    from graph.limits import Limits
    from graph.schema import build_schema, export_sdl

    other = build_schema(Limits(max_depth=3, max_cost=10))
    assert other is not schema
    assert other.as_str() == schema.as_str()
    assert export_sdl() == (ROOT / "schema.graphql").read_text(encoding="utf-8")
