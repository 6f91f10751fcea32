"""The README's pictures: the dashboard and GraphiQL of a `vajra serve` with the demo data,
taken by Chromium. `scripts/screenshots` runs it (needs Redis at TEST_REDIS_URL)."""

from __future__ import annotations

import asyncio
import secrets
import sys
import tempfile
import urllib.parse
from pathlib import Path

from playwright.async_api import async_playwright
from redis import asyncio as aioredis

from tests.browser import CHROMIUM
from tests.conftest import REDIS_URL
from tests.servers import Server, base_env, vajra

QUERY = """{
  stats { totalThreats critical last24h }
  threats(limit: 3, filter: { severity: [CRITICAL] }) {
    total
    items { id title source publishedAt }
  }
}
"""


async def main(folder: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        namespace = "shots-" + secrets.token_hex(4)
        env = base_env(
            DATABASE_URL=f"sqlite+aiosqlite:///{tmp}/demo.db",
            REDIS_URL=REDIS_URL,
            CACHE_NAMESPACE=namespace,
        )
        code, output = await vajra(env, "seed", "--threats", "20000", seconds=120)
        assert code == 0, output
        server = Server("screenshots", env, Path(tmp))
        server.start()
        try:
            await server.wait_healthy()
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM)
                page = await browser.new_page(viewport={"width": 1280, "height": 1000})
                await page.goto(server.url + "/")
                await page.wait_for_selector("body[data-ready=true]")
                await page.screenshot(path=str(folder / "dashboard.png"))
                await page.goto(f"{server.url}/graphql?q={urllib.parse.quote(QUERY)}")
                await page.click(".graphiql-execute-button")
                await page.locator(".graphiql-response").get_by_text('"total"').wait_for()
                await page.screenshot(path=str(folder / "graphiql.png"))
                await browser.close()
        finally:
            server.stop()
            redis = aioredis.Redis.from_url(REDIS_URL)
            async for key in redis.scan_iter(match=f"{namespace}:*", count=1000):
                await redis.unlink(key)
            await redis.aclose()
    print(f"wrote {folder / 'dashboard.png'} and {folder / 'graphiql.png'}")


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs")
    target.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(target))
