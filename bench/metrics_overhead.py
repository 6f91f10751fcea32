"""What graph.metrics.Observe adds to a warm whole-operation hit: the same ASGI app called
in-process with and without it, in alternating rounds (the machine's noise hits both).

    PYTHONPATH=. python -m bench.metrics_overhead                    # one process's registry
    PROMETHEUS_MULTIPROC_DIR=$(mktemp -d) PYTHONPATH=. python -m bench.metrics_overhead

Needs Redis at REDIS_URL (default 127.0.0.1:6379); keys go to a namespace of its own."""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import tempfile
import time
from typing import Any

import orjson

from cache import Cache, RedisBackend
from graph.app import create_app
from graph.settings import Settings
from resolvers.store import Database

BODY = orjson.dumps({"query": "query Dash { stats { totalThreats } trend(days: 7) { count } }"})
SCOPE: dict[str, Any] = {
    "type": "http",
    "method": "POST",
    "path": "/graphql",
    "raw_path": b"/graphql",
    "query_string": b"",
    "headers": [(b"content-type", b"application/json"), (b"accept", b"application/json")],
    "client": ("127.0.0.1", 1),
    "server": ("127.0.0.1", 8000),
    "scheme": "http",
    "http_version": "1.1",
}


async def call(app: Any) -> bytes:
    status: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.extend(v for k, v in message["headers"] if k == b"x-cache")

    await app(dict(SCOPE), receive, send)
    return status[0] if status else b"-"


async def per_call(app: Any, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await call(app)
    return (time.perf_counter() - started) / n * 1e6


async def main() -> None:
    directory = tempfile.mkdtemp()
    db = Database(f"sqlite+aiosqlite:///{directory}/bench.db")
    await db.create_schema()
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    cache = Cache(RedisBackend(url), namespace="bench-" + secrets.token_hex(4), schema_version="b")
    await cache.start()  # listening: the local tier answers, as in a server
    observed = create_app(Settings(DATABASE_URL=db.url), db=db, cache=cache)
    bare = observed.app  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    while await call(observed) != b"HIT" or await call(bare) != b"HIT":  # stored, and L1 live
        assert time.monotonic() < deadline, "never a HIT: is Redis up?"
        await asyncio.sleep(0.05)
    rounds, n = 41, 500
    added = []
    without = []
    for _ in range(rounds):  # paired rounds: a burst of noise hits both of a pair
        plain = await per_call(bare, n)
        added.append(await per_call(observed, n) - plain)
        without.append(plain)
    mode = "multiprocess" if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else "single process"
    print(
        f"warm whole-operation HIT ({mode}, {rounds} paired rounds of {n}): without Observe "
        f"{statistics.median(without):.1f} us, added by it {statistics.median(added):.1f} us "
        f"(median of the pairs' differences)"
    )
    await cache.close()
    await db.close()


if __name__ == "__main__":
    asyncio.run(main())
