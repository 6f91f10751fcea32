"""Roles: the crawler ingests, the admin clears; reads are public."""

from __future__ import annotations

import httpx
import pytest

from graph.app import create_app
from graph.context import Role, Tokens
from graph.errors import Forbidden, Unauthenticated
from graph.settings import Settings
from resolvers.store import Database
from tests.conftest import ADMIN, CRAWLER
from tests.test_bad_input import codes, post
from tests.test_ingest import INGEST, crawled


def test_the_admin_token_may_do_what_the_crawler_may() -> None:
    tokens = Tokens(crawler=CRAWLER, admin=ADMIN)
    tokens.require(Role.CRAWLER, f"Bearer {ADMIN}")
    tokens.require(Role.CRAWLER, f"bearer {CRAWLER}")
    tokens.require(Role.ADMIN, f"Bearer {ADMIN}")


def test_the_crawler_token_is_forbidden_the_admin_role() -> None:
    with pytest.raises(Forbidden, match="admin role"):
        Tokens(crawler=CRAWLER, admin=ADMIN).require(Role.ADMIN, f"Bearer {CRAWLER}")


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer   ", f"Basic {CRAWLER}", "Bearer nope"]
)
def test_a_missing_or_wrong_credential_is_unauthenticated(header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        Tokens(crawler=CRAWLER, admin=ADMIN).require(Role.CRAWLER, header)


async def test_crawler_can_ingest_and_admin_too(client: httpx.AsyncClient) -> None:
    for n, token in enumerate((CRAWLER, ADMIN)):
        body = (await post(client, INGEST, {"threats": [crawled(n)]}, token)).json()
        assert "errors" not in body
        assert body["data"]["ingestThreats"]["inserted"] == 1


async def test_clear_cache_needs_the_admin_token(client: httpx.AsyncClient) -> None:
    as_crawler = (await post(client, "mutation { clearCache { cleared } }", token=CRAWLER)).json()
    assert codes(as_crawler) == ["FORBIDDEN"]
    as_admin = (await post(client, "mutation { clearCache { cleared } }", token=ADMIN)).json()
    assert "errors" not in as_admin


async def test_an_unconfigured_token_names_the_variable_to_set(sqlite_db: Database) -> None:
    app = create_app(
        Settings(DATABASE_URL=sqlite_db.url, VAJRA_CRAWLER_TOKEN="", VAJRA_ADMIN_TOKEN=""),
        db=sqlite_db,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        ingest = (await post(http, INGEST, {"threats": [crawled(1)]}, "anything")).json()
        clear = (await post(http, "mutation { clearCache { cleared } }", token="anything")).json()
        reads = (await post(http, "{ stats { totalThreats } }")).json()
    assert codes(ingest) == ["FORBIDDEN"]
    assert "VAJRA_CRAWLER_TOKEN" in ingest["errors"][0]["message"]
    assert codes(clear) == ["FORBIDDEN"]
    assert "VAJRA_ADMIN_TOKEN" in clear["errors"][0]["message"]
    assert reads == {"data": {"stats": {"totalThreats": 0}}}
    assert await sqlite_db.count() == 0
