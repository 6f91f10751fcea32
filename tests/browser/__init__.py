"""Real Chromium (Debian's, launched through Playwright's executable_path: `playwright install`
downloads from a host CI cannot reach) against a real `vajra serve`: helpers for the browser
tests, whose fixtures are in conftest.py. Every page is watched: requests for any host but
127.0.0.1 are recorded (or aborted), and console errors and uncaught exceptions collected."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Page, Route

from tests.conftest import CRAWLER
from tests.servers import Server

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FOUND = Path(CHROMIUM).is_file()
INGEST = "mutation($t: [ThreatInput!]!) { ingestThreats(threats: $t) { inserted updated } }"
SEVERITIES = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO"]
SOURCES = ["nvd", "otx", "urlhaus"]
CATEGORIES = ["vulnerability", "malware", "phishing"]


@dataclass
class Watch:
    """What a page did that a test must see: requests for other hosts, console errors."""

    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.foreign == [], f"requests left 127.0.0.1: {self.foreign}"
        assert self.errors == [], f"console errors: {self.errors}"


async def watch(page: Page, *, block: bool = False) -> Watch:
    """Record what leaves 127.0.0.1 (and, with `block`, abort it: routing turns off the
    browser's HTTP cache, so the dashboard's revalidation is watched without it)."""
    seen = Watch()

    def local(url: str) -> bool:
        return url.startswith(("http://127.0.0.1:", "data:", "blob:", "about:"))

    async def local_only(route: Route) -> None:
        if local(route.request.url):
            await route.continue_()
        else:
            seen.foreign.append(route.request.url)
            await route.abort()

    if block:
        await page.context.route("**/*", local_only)
    else:
        page.on("request", lambda r: None if local(r.url) else seen.foreign.append(r.url))
    page.on(
        "console",
        lambda message: seen.errors.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: seen.errors.append(f"uncaught: {error}"))
    return seen


def threat(n: int, **overrides: Any) -> dict[str, Any]:
    """The n-th of a spread of threats: severities, sources and categories in turn, one
    every seven hours back from now."""
    published = dt.datetime.now(dt.UTC) - dt.timedelta(hours=7 * n, minutes=1)
    values: dict[str, Any] = {
        "source": SOURCES[n % 3],
        "externalId": f"T-{n}",
        "title": f"Threat number {n}",
        "description": f"What threat {n} does.",
        "severity": SEVERITIES[n % 5],
        "category": CATEGORIES[(n // 3) % 3],
        "publishedAt": published.isoformat().replace("+00:00", "Z"),
        "tags": ["tag-a", f"tag-{n}"],
        "indicators": [{"kind": "CVE", "value": f"CVE-2026-{1000 + n}"}],
        "url": f"https://feeds.example/{n}",
    }
    values.update(overrides)
    return values


async def ingest(server: Server, threats: list[dict[str, Any]]) -> dict[str, Any]:
    """Through the ingestThreats mutation, over HTTP, with the crawler's token."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.post(
            "/graphql",
            json={"query": INGEST, "variables": {"t": threats}},
            headers={"authorization": f"Bearer {CRAWLER}"},
        )
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body


async def query(server: Server, document: str, variables: dict[str, Any] | None = None) -> Any:
    """What the API says, read around the page."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.post("/graphql", json={"query": document, "variables": variables})
    body = response.json()
    assert "errors" not in body, body
    return body["data"]
