"""The pages' HTTP side: the dashboard's CSP, every asset local and served, the vendored files
as recorded, and production keeping the dashboard while GraphiQL and /docs go."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import httpx
import pytest

from graph.app import create_app
from graph.pages import IDE, STATIC, VENDOR
from graph.settings import Settings
from resolvers.store import Database

ASSET = re.compile(r'(?:src|href)="([^"]+)"')


@pytest.fixture
async def app_with(sqlite_db: Database) -> Any:
    clients: list[httpx.AsyncClient] = []

    async def make(**env: str) -> httpx.AsyncClient:
        settings = Settings(DATABASE_URL=sqlite_db.url, CACHE_ENABLED="false", **env)  # type: ignore[arg-type]
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(settings, db=sqlite_db)),
            base_url="http://t",
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def test_vendored_files_match_their_recorded_sums() -> None:
    recorded = {}
    for line in (VENDOR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        recorded[name] = digest
    present = {str(p.relative_to(VENDOR)) for p in VENDOR.rglob("*") if p.is_file()} - {
        "SHA256SUMS"
    }
    assert present == set(recorded)
    for name, digest in recorded.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name


async def test_the_dashboard_has_a_strict_csp_and_no_inline_script(app_with: Any) -> None:
    client = await app_with()
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = dict(
        part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";")
    )
    assert policy["script-src"] == "'self'"
    assert policy["default-src"] == "'none'"
    assert "unsafe" not in page.headers["content-security-policy"]
    assert re.findall(r"<script(?![^>]*\bsrc=)", page.text) == []
    assert " on" not in re.sub(r"\s+", " ", page.text).lower().replace(" one", "")


@pytest.mark.parametrize(
    ("path", "accept"), [("/", "text/html"), ("/graphql", "text/html"), ("/docs", "text/html")]
)
async def test_every_asset_of_a_page_is_local_and_served(
    app_with: Any, path: str, accept: str
) -> None:
    client = await app_with()
    page = await client.get(path, headers={"accept": accept})
    assert page.status_code == 200
    assets = ASSET.findall(page.text)
    assert assets
    for asset in assets:
        assert asset.startswith("/"), asset
        assert not asset.startswith("//"), asset
        assert (await client.get(asset)).status_code == 200, asset


async def test_dashboard_modules_import_only_local_modules(app_with: Any) -> None:
    client = await app_with()
    for module in STATIC.glob("*.js"):
        for imported in re.findall(r'from "([^"]+)"', module.read_text()):
            assert imported.startswith("./"), (module.name, imported)
            assert (await client.get(f"/static/{imported[2:]}")).status_code == 200


async def test_production_keeps_the_dashboard_and_drops_graphiql_assets(app_with: Any) -> None:
    client = await app_with(VAJRA_ENV="production")
    assert (await client.get("/")).status_code == 200
    assert (await client.get("/static/dashboard.js")).status_code == 200
    for path in ("/docs", "/vendor/graphiql/graphiql.min.js", "/ide/graphiql.js"):
        assert (await client.get(path)).status_code == 404, path
    assert IDE.is_dir()
