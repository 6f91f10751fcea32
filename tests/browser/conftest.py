"""Fixtures of the browser tests: Chromium, and a `vajra serve` of their own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright
from redis import asyncio as aioredis

from tests.browser import CHROMIUM, CHROMIUM_FOUND
from tests.conftest import CRAWLER, REDIS_URL, _unavailable
from tests.servers import Server, sqlite_server


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Chromium, or a skip where it is missing (a failure under CI=true)."""
    if not CHROMIUM_FOUND:
        _unavailable("Chromium is not installed (apt-get install chromium)", CHROMIUM)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def server(tmp_path: Path, redis_client: aioredis.Redis) -> AsyncIterator[Server]:
    """A `vajra serve` on an empty SQLite file, caching in a namespace of its own."""
    async with sqlite_server(
        "ui", tmp_path, redis_client, REDIS_URL, VAJRA_CRAWLER_TOKEN=CRAWLER
    ) as s:
        yield s
