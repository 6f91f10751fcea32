"""GraphiQL and the API docs in Chromium, with every request for another host aborted: they
load from this service's own files and work."""

from __future__ import annotations

import urllib.parse

from playwright.async_api import Browser

from tests.browser import ingest, threat, watch
from tests.servers import Server


async def test_graphiql_loads_offline_and_runs_a_query(browser: Browser, server: Server) -> None:
    await ingest(server, [threat(n) for n in range(3)])
    page = await browser.new_page(viewport={"width": 1280, "height": 720})
    seen = await watch(page, block=True)
    document = "{\n  stats {\n    totalThreats\n    sources\n  }\n}\n"
    await page.goto(f"{server.url}/graphql?q={urllib.parse.quote(document)}")
    await page.wait_for_selector(".graphiql-container .graphiql-execute-button")
    await page.click(".graphiql-execute-button")
    response = page.locator(".graphiql-response")
    await response.get_by_text('"totalThreats": 3').wait_for()
    await response.get_by_text('"sources": 3').wait_for()
    # The schema was introspected: the docs pane lists the root types.
    await page.click("button[aria-label='Show Documentation Explorer']")
    await page.get_by_text("Query", exact=True).first.wait_for()
    seen.assert_clean()


async def test_the_api_docs_load_offline(browser: Browser, server: Server) -> None:
    page = await browser.new_page()
    seen = await watch(page, block=True)
    await page.goto(server.url + "/docs")
    await page.wait_for_selector(".swagger-ui .info .title")
    assert "Vajra" in await page.inner_text(".swagger-ui .info .title")
    await page.get_by_text("/health").first.wait_for()
    seen.assert_clean()
