"""Odd input an attacker (or a broken crawler) sends gets a coded error, never a 500, and
changes nothing."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from resolvers import dashboard
from resolvers.records import ThreatFilter
from resolvers.store import Database
from resolvers.threats import list_threats
from tests.conftest import ADMIN, CRAWLER, add, threat_input
from tests.test_ingest import INGEST, crawled


def codes(response: httpx.Response) -> list[str]:
    return [e["extensions"]["code"] for e in response.json()["errors"]]


async def graphql(
    client: httpx.AsyncClient, query: str, variables: Any = None, headers: Any = None
) -> httpx.Response:
    return await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers or {}
    )


@pytest.mark.parametrize("token", ["é", "ü" * 40, "\u00ff", CRAWLER + "é"])
async def test_a_non_ascii_token_is_unauthenticated_never_a_500(
    client: httpx.AsyncClient, sqlite_db: Database, token: str
) -> None:
    # Sent as the UTF-8 bytes a client would put on the wire.
    header = {"Authorization": f"Bearer {token}".encode()}
    cleared = await client.post("/api/cache/clear", headers=header)
    assert cleared.status_code == 401, cleared.text
    assert codes(cleared) == ["UNAUTHENTICATED"]
    mutation = await graphql(client, INGEST, {"threats": [crawled(1)]}, header)
    assert mutation.status_code == 200, mutation.text
    assert codes(mutation) == ["UNAUTHENTICATED"]
    assert await sqlite_db.count() == 0


async def test_the_right_tokens_still_work(client: httpx.AsyncClient) -> None:
    ok = await graphql(
        client, INGEST, {"threats": [crawled(1)]}, {"Authorization": f"Bearer {CRAWLER}"}
    )
    assert "errors" not in ok.json(), ok.text
    cleared = await client.post("/api/cache/clear", headers={"Authorization": f"Bearer {ADMIN}"})
    assert cleared.status_code == 200, cleared.text


@pytest.mark.parametrize("id_", ["²", "١٢", "\uff11\uff12", "12 ", "-1", "+1", "", "9" * 19])
async def test_a_threat_id_is_ascii_digits_only(client: httpx.AsyncClient, id_: str) -> None:
    await graphql(
        client, INGEST, {"threats": [crawled(12)]}, {"Authorization": f"Bearer {CRAWLER}"}
    )
    response = await graphql(client, "query($id: ID!) { threat(id: $id) { id } }", {"id": id_})
    assert response.status_code == 200, response.text
    assert codes(response) == ["BAD_USER_INPUT"], response.text
    assert response.json()["data"] == {"threat": None}


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ('{ threats(filter: {search: "a\\u0000b"}) { total } }', None),
        (
            "query($f: ThreatFilter) { threats(filter: $f) { total } }",
            {"f": {"search": "\x00"}},
        ),
        ("query($id: ID!) { threat(id: $id) { id } }", {"id": "1\x00"}),
    ],
)
async def test_a_nul_in_a_string_argument_is_bad_user_input(
    client: httpx.AsyncClient, query: str, variables: Any
) -> None:
    response = await graphql(client, query, variables)
    assert response.status_code in (200, 400), response.text
    assert codes(response) == ["BAD_USER_INPUT"], response.text


async def test_a_nul_in_a_crawled_threat_writes_nothing(
    client: httpx.AsyncClient, sqlite_db: Database
) -> None:
    batch = [crawled(1), crawled(2, title="bad\x00title")]
    response = await graphql(
        client, INGEST, {"threats": batch}, {"Authorization": f"Bearer {CRAWLER}"}
    )
    assert codes(response) == ["BAD_USER_INPUT"], response.text
    assert await sqlite_db.count() == 0


@pytest.mark.parametrize(
    ("title", "search"),
    [("Ünïcode flaw", "ünïcode"), ("ünïcode flaw", "ÜNÏCODE"), ("ΑΘΗΝΑ breach", "αθηνα")],
)
async def test_search_is_case_insensitive_beyond_ascii_on_both_engines(
    db: Database, title: str, search: str
) -> None:
    await add(db, threat_input(1, title=title), threat_input(2, title="unrelated"))
    page = await list_threats(db, where=ThreatFilter(search=search))
    assert [t.title for t in page.items] == [title]
    assert (await list_threats(db, where=ThreatFilter(search="%"))).total == 0


async def test_client_errors_are_logged_at_info_in_one_short_line(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    huge = '{ threats(filter: {search: "' + "x" * 20_000  # unterminated, on one long line
    await graphql(client, "{ threats(limit: 0) { total } }")
    await graphql(client, huge)
    records = [r for r in caplog.records if r.name.startswith(("vajra", "strawberry"))]
    assert records, "nothing was logged"
    for record in records:
        assert record.levelno <= logging.INFO, record.getMessage()[:300]
        assert record.exc_info is None
        assert len(record.getMessage()) < 300
    assert any("BAD_USER_INPUT" in r.getMessage() for r in records)
    assert any("GRAPHQL_PARSE_FAILED" in r.getMessage() for r in records)


async def test_a_bug_is_logged_at_error_with_its_traceback(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(dashboard, "stats", broken)
    response = await graphql(client, "{ stats { totalThreats } }", headers={"x-cache-debug": "1"})
    assert codes(response) == ["INTERNAL_SERVER_ERROR"], response.text
    assert "a bug" not in response.text
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None


async def test_an_operation_name_not_in_the_document_is_a_bad_request(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/graphql", json={"query": "query A { __typename }", "operationName": "Nope"}
    )
    assert response.status_code == 400, response.text
    assert codes(response) == ["BAD_REQUEST"]
    assert "Nope" in response.json()["errors"][0]["message"]
