"""The dashboard at /, in Chromium: every widget with the API's numbers, filters and pages,
an ingest on screen within 2 s, crawler text that stays text, a phone's width."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx
from playwright.async_api import Browser, Page, Request

from tests.browser import ingest, query, threat, watch
from tests.servers import Server

API = """query($days: Int!, $page: Int!, $filter: ThreatFilter) {
  stats { totalThreats critical high last24h sources lastIngestedAt }
  trend(days: $days) { date count }
  severityBreakdown { severity count }
  sourceBreakdown(limit: 10) { source count }
  threats(page: $page, limit: 20, filter: $filter) { total items { id } }
}"""


def formatted(n: int) -> str:
    return f"{n:,}"


def when(iso: str) -> str:
    return f"{iso[:10]} {iso[11:16]} UTC"


async def opened(browser: Browser, server: Server, width: int = 1280) -> tuple[Page, Any]:
    page = await browser.new_page(viewport={"width": width, "height": 900})
    seen = await watch(page)
    await page.goto(server.url + "/")
    await page.wait_for_selector("body[data-ready=true]")
    return page, seen


async def texts(page: Page, selector: str) -> list[str]:
    found: list[str] = await page.locator(selector).all_inner_texts()
    return found


async def row_ids(page: Page) -> list[str]:
    ids: list[str] = await page.eval_on_selector_all(
        "#threats tbody tr[data-id]", "rows => rows.map(r => r.dataset.id)"
    )
    return ids


async def test_every_widget_shows_the_apis_numbers(browser: Browser, server: Server) -> None:
    await ingest(server, [threat(n) for n in range(30)])
    page, seen = await opened(browser, server)
    api = await query(server, API, {"days": 30, "page": 1, "filter": None})
    stats = api["stats"]
    for card, value in [
        ("total", formatted(stats["totalThreats"])),
        ("critical", formatted(stats["critical"])),
        ("high", formatted(stats["high"])),
        ("last24h", formatted(stats["last24h"])),
        ("sources", formatted(stats["sources"])),
        ("last-ingest", when(stats["lastIngestedAt"])),
    ]:
        assert await page.inner_text(f"#card-{card}") == value, card
    bars = await page.eval_on_selector_all(
        "#trend rect.bar", "bars => bars.map(b => [b.dataset.date, Number(b.dataset.count)])"
    )
    assert bars == [[p["date"], p["count"]] for p in api["trend"]]
    severities = await page.eval_on_selector_all(
        "#severity .bar-row", "rows => rows.map(r => [r.dataset.name, Number(r.dataset.count)])"
    )
    assert severities == [[s["severity"], s["count"]] for s in api["severityBreakdown"]]
    assert await texts(page, "#sources .bar-label") == [s["source"] for s in api["sourceBreakdown"]]
    assert await texts(page, "#sources .bar-count") == [
        formatted(s["count"]) for s in api["sourceBreakdown"]
    ]
    assert await row_ids(page) == [t["id"] for t in api["threats"]["items"]]
    assert await page.inner_text("#page-info") == "Page 1 of 2"
    assert await page.inner_text("#threats-total") == "30 matching"

    await page.click("[data-days='7']")
    week = (await query(server, API, {"days": 7, "page": 1, "filter": None}))["trend"]
    await page.wait_for_function("() => document.querySelectorAll('#trend rect.bar').length === 7")
    counts = await page.eval_on_selector_all(
        "#trend rect.bar", "bars => bars.map(b => Number(b.dataset.count))"
    )
    assert counts == [p["count"] for p in week]

    # A threat's detail: its indicators, tags and link.
    first = api["threats"]["items"][0]["id"]
    await page.click(f"#threats tr[data-id='{first}'] button")
    await page.wait_for_selector("#detail[open]")
    assert await page.inner_text("#detail-title") == "Threat number 0"
    assert await texts(page, "#detail-indicators li") == ["CVE CVE-2026-1000"]
    assert await texts(page, "#detail-tags .tag") == ["tag-a", "tag-0"]
    assert await page.get_attribute("#detail-link", "href") == "https://feeds.example/0"
    seen.assert_clean()


async def test_polls_revalidate_with_the_etag(browser: Browser, server: Server) -> None:
    await ingest(server, [threat(n) for n in range(5)])
    page = await browser.new_page()
    seen = await watch(page)
    polls: list[Request] = []
    page.on("request", lambda r: polls.append(r) if "/graphql?" in r.url else None)
    await page.goto(server.url + "/")
    await page.wait_for_selector("body[data-ready=true]")
    await page.wait_for_timeout(2500)
    # The browser sent the ETag it holds (added by its network stack: all_headers sees it).
    conditional = [r.url for r in polls if "if-none-match" in await r.all_headers()]
    assert len(conditional) >= 1
    # The server answers such a poll with 304 and no body.
    async with httpx.AsyncClient(base_url=server.url) as http:
        fresh = await http.get(conditional[-1])
        assert fresh.status_code == 200
        again = await http.get(conditional[-1], headers={"if-none-match": fresh.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    # The hash a page computes without WebCrypto (plain http from another host) is SHA-256.
    samples = ["", "abc", "x" * 55, "x" * 56, "query Dashboard { é ✓ }" * 9]
    digests = await page.evaluate(
        """async (samples) => {
            const { sha256Sync } = await import("/static/sha256.js");
            return samples.map((s) => sha256Sync(new TextEncoder().encode(s)));
        }""",
        samples,
    )
    assert digests == [hashlib.sha256(s.encode()).hexdigest() for s in samples]
    seen.assert_clean()


async def test_filters_search_and_pages_update_the_table(browser: Browser, server: Server) -> None:
    await ingest(server, [threat(n) for n in range(45)])
    page, seen = await opened(browser, server)

    async def expect(filter: dict[str, Any] | None, page_number: int = 1) -> None:
        api = await query(server, API, {"days": 30, "page": page_number, "filter": filter})
        ids = [t["id"] for t in api["threats"]["items"]]
        await page.wait_for_function(
            "(ids) => JSON.stringify([...document.querySelectorAll('#threats tbody tr[data-id]')]"
            ".map(r => r.dataset.id)) === JSON.stringify(ids)",
            arg=ids,
        )
        assert await page.inner_text("#threats-total") == f"{api['threats']['total']} matching"

    await page.click("#next")
    await expect(None, 2)
    assert await page.inner_text("#page-info") == "Page 2 of 3"
    await page.select_option("#filter-severity", "CRITICAL")
    await expect({"severity": ["CRITICAL"]})
    assert set(await texts(page, "#threats tbody .sev")) == {"CRITICAL"}
    await page.select_option("#filter-source", "otx")
    await expect({"severity": ["CRITICAL"], "source": "otx"})
    await page.select_option("#filter-severity", "")
    await page.fill("#filter-category", "malware")
    await expect({"source": "otx", "category": "malware"})
    await page.fill("#filter-category", "")
    await page.select_option("#filter-source", "")
    await page.fill("#search", "number 4")
    await expect({"search": "number 4"})
    assert await texts(page, "#threats tbody .title") == [
        "Threat number 4",
        *(f"Threat number {n}" for n in range(40, 45)),
    ]
    seen.assert_clean()


async def test_an_ingest_is_on_the_open_page_within_two_seconds(
    browser: Browser, server: Server
) -> None:
    await ingest(server, [threat(n) for n in range(1, 10)])
    page, seen = await opened(browser, server)
    assert await page.inner_text("#card-total") == "9"
    await page.wait_for_timeout(1200)  # a few polls answered 304 first
    await ingest(server, [threat(0, title="Freshly ingested", severity="CRITICAL")])
    done = time.monotonic()
    await page.wait_for_function(
        "() => document.querySelector('#threats tbody .title')?.innerText === 'Freshly ingested'"
        " && document.querySelector('#card-total').innerText === '10'",
        timeout=2000,
    )
    assert time.monotonic() - done < 2.0
    assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1
    seen.assert_clean()


HOSTILE = [
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    '"><svg onload="window.__pwned=1">',
]


async def test_crawler_text_is_shown_as_text_and_never_runs(
    browser: Browser, server: Server
) -> None:
    threats = [
        threat(
            n,
            title=title,
            description=title,
            category=title[:64],
            tags=[title[:64]],
            indicators=[{"kind": "URL", "value": title}],
            url=f'https://feeds.example/{n}"><img src=x onerror="window.__pwned=1">',
        )
        for n, title in enumerate(HOSTILE)
    ]
    await ingest(server, threats)
    page, seen = await opened(browser, server)
    assert sorted(await texts(page, "#threats tbody .title")) == sorted(HOSTILE)
    assert sorted(await texts(page, "#threats tbody .category")) == sorted(t[:64] for t in HOSTILE)
    assert await page.locator("main img, main script, main svg svg").count() == 0
    for n in range(len(HOSTILE)):
        await page.click(f"#threats tbody tr:nth-child({n + 1}) button")
        await page.wait_for_selector("#detail[open]")
        title = await page.inner_text("#detail-title")
        assert title in HOSTILE
        assert await texts(page, "#detail-indicators li") == [f"URL {title}"]
        assert await page.locator("#detail img, #detail script, #detail svg").count() == 0
        href = await page.get_attribute("#detail-link", "href")
        assert href is not None
        assert href.startswith("https://feeds.example/")
        assert '"' not in href  # the URL parser percent-encoded it
        await page.click("#detail-close")
    # Links are only ever http(s), whatever the API lets through one day.
    verdicts = await page.evaluate(
        """async () => {
            const { safeUrl } = await import("/static/dom.js");
            return ["javascript:window.__pwned=1", " JavaScript:alert(1)", "data:text/html,x",
                    "vbscript:x", "//evil.example/", "https://ok.example/a"].map(safeUrl);
        }"""
    )
    assert verdicts == [None, None, None, None, None, "https://ok.example/a"]
    await page.wait_for_timeout(500)
    assert await page.evaluate("typeof window.__pwned") == "undefined"
    seen.assert_clean()


async def test_a_phone_width_has_no_horizontal_page_scroll(
    browser: Browser, server: Server
) -> None:
    await ingest(server, [threat(n, title=f"A long title {'x' * 80} {n}") for n in range(25)])
    page, seen = await opened(browser, server, width=375)
    widths = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1] == 375
    await page.click("#threats tbody tr:first-child button")
    await page.wait_for_selector("#detail[open]")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    seen.assert_clean()
