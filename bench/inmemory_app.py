"""The reference for the cache's own cost: the same schema and HTTP layer, no cache, and
resolvers that answer from memory (records read once from the benchmark database).

    uvicorn bench.inmemory_app:create_app --factory
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from starlette.types import ASGIApp

from graph.app import create_app as create_real_app
from graph.settings import Settings
from resolvers import dashboard, threats
from resolvers.store import Database


async def _snapshot(url: str) -> dict[str, Any]:
    db = Database(url)
    snapshot = {
        "stats": await dashboard.stats(db),
        "threats": await threats.list_threats(db, page=1, limit=10),
        "trend": await dashboard.trend(db, days=10),
        "severity": await dashboard.severity_breakdown(db),
        "sources": await dashboard.source_breakdown(db, limit=10),
    }
    await db.close()
    return snapshot


def create_app() -> ASGIApp:
    settings = Settings(CACHE_ENABLED=False)
    # uvicorn calls this factory inside its event loop: read the snapshot on another thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        snapshot = pool.submit(asyncio.run, _snapshot(settings.database_url)).result()

    async def stats(*_args: Any, **_kwargs: Any) -> Any:
        return snapshot["stats"]

    async def list_threats(*_args: Any, **_kwargs: Any) -> Any:
        return snapshot["threats"]

    async def trend(*_args: Any, **_kwargs: Any) -> Any:
        return snapshot["trend"]

    async def severity_breakdown(*_args: Any, **_kwargs: Any) -> Any:
        return snapshot["severity"]

    async def source_breakdown(*_args: Any, **_kwargs: Any) -> Any:
        return snapshot["sources"]

    dashboard.stats = stats  # type: ignore[assignment]
    dashboard.trend = trend  # type: ignore[assignment]
    dashboard.severity_breakdown = severity_breakdown  # type: ignore[assignment]
    dashboard.source_breakdown = source_breakdown  # type: ignore[assignment]
    threats.list_threats = list_threats  # type: ignore[assignment]
    return create_real_app(settings)
