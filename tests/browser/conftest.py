"""Fixtures of the browser tests: Chromium, and a `vajra serve` of their own."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright
from redis import asyncio as aioredis

from tests.browser import CHROMIUM, CHROMIUM_FOUND
from tests.conftest import CRAWLER, REDIS_URL, _unavailable
from tests.servers import Server, base_env


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
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """A `vajra serve` on an empty SQLite file, caching in a namespace of its own."""
    namespace = "ui-" + secrets.token_hex(4)
    redis = aioredis.Redis.from_url(REDIS_URL)
    try:
        await redis.ping()
    except Exception as exc:
        await redis.aclose()
        _unavailable(f"Redis is unreachable at {REDIS_URL}", exc)
    env = base_env(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'ui.db'}",
        REDIS_URL=REDIS_URL,
        CACHE_NAMESPACE=namespace,
        VAJRA_CRAWLER_TOKEN=CRAWLER,
    )
    running = Server("ui", env, tmp_path)
    running.start()
    try:
        await running.wait_healthy()
        yield running
    finally:
        running.stop()
        async for key in redis.scan_iter(match=f"{namespace}:*", count=1000):
            await redis.unlink(key)
        await redis.aclose()
