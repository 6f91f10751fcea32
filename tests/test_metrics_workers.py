"""`vajra serve --workers 2 --access-log`: /metrics adds up every worker's counts, whichever
worker answers the scrape; one access line per request."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.redis_server import RedisServer
from tests.servers import Server, base_env
from tests.test_metrics import parse, value

DASH = "query Dash { stats { totalThreats } }"
ACCESS = re.compile(
    r'^INFO vajra\.access: 127\.0\.0\.1 "POST /graphql" op=Dash status=200 '
    r"cache=(HIT|MISS|COALESCED) \d+\.\d\dms$"
)


@pytest.fixture
async def server(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Server]:
    env = base_env(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'vajra.db'}",
        REDIS_URL=redis_server.url,
        CACHE_NAMESPACE="metrics-" + secrets.token_hex(4),
        CACHE_NODE_HEADER="true",
        LOG_LEVEL="INFO",  # uvicorn's word on a worker it restarted, if a request fails
        # A directory of the test's own (emptied at start), not a temporary one that a
        # server killed on the way out would leave behind.
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    server = Server("workers", env, tmp_path, ("--workers", "2", "--access-log"))
    server.start()
    try:
        await server.wait_healthy(deadline=120)  # two workers, on a loaded machine
        yield server
    finally:
        server.stop()


async def test_two_workers_counts_add_up_and_each_request_is_logged(server: Server) -> None:
    nodes: dict[str, int] = {}
    sent = 0
    deadline = time.monotonic() + 30
    # A connection of its own per request, until both workers have answered some.
    while len(nodes) < 2 or sent < 20:
        assert time.monotonic() < deadline, f"one worker answered everything: {nodes}"
        async with httpx.AsyncClient(base_url=server.url) as http:
            try:
                answer = await http.post("/graphql", json={"query": DASH})
            except httpx.TransportError as exc:  # a connection the server dropped: say why
                pytest.fail(f"request {sent + 1}: {exc!r}\n{server.log_tail(60)}")
        assert answer.status_code == 200
        sent += 1
        node = answer.headers["x-cache-node"]
        nodes[node] = nodes.get(node, 0) + 1
    original = dict(nodes)
    # Each worker writes its counts every FLUSH_EVERY seconds; whichever worker answers a
    # scrape, it reads them all.
    deadline = time.monotonic() + 10
    agreeing = 0
    while agreeing < 6:
        async with httpx.AsyncClient(base_url=server.url) as http:
            samples = parse((await http.get("/metrics")).text)
        answered = value(
            samples, "vajra_http_requests_total", path="/graphql", operation="Dash", status="200"
        )
        looked_up = sum(
            value(samples, "vajra_cache_lookups_total", coordinate="(operation)", result=r)
            for r in ("hit", "miss", "coalesced")
        )
        assert answered <= sent
        if answered == sent and looked_up == sent:
            agreeing += 1
            assert value(samples, "vajra_cache_breaker", state="closed") == 2  # two live workers
        else:
            assert time.monotonic() < deadline, (answered, looked_up, sent, nodes)
            await asyncio.sleep(0.2)
    # A worker killed (nothing runs on its way out) is found dead at a scrape: it leaves the
    # breaker gauge, uvicorn starts another in its place, and its counts stay in the totals.
    killed = next(iter(nodes))
    os.kill(int(killed.rpartition("-")[2]), signal.SIGKILL)
    deadline = time.monotonic() + 120  # a worker's start, on a loaded machine
    while not set(nodes) - set(original):  # until the new worker has answered (it is up)
        assert time.monotonic() < deadline, server.log_tail()
        with contextlib.suppress(httpx.HTTPError):
            async with httpx.AsyncClient(base_url=server.url) as http:
                answer = await http.post("/graphql", json={"query": DASH})
            sent += 1
            nodes[answer.headers["x-cache-node"]] = 1
        await asyncio.sleep(0.05)
    while True:
        async with httpx.AsyncClient(base_url=server.url) as http:
            samples = parse((await http.get("/metrics")).text)
        answered = value(
            samples, "vajra_http_requests_total", path="/graphql", operation="Dash", status="200"
        )
        if answered == sent:
            break
        assert time.monotonic() < deadline, (answered, sent)
        await asyncio.sleep(0.2)
    assert value(samples, "vajra_cache_breaker", state="closed") == 2
    server.stop()
    lines = [line for line in server.log.read_text().splitlines() if "vajra.access" in line]
    graphql = [line for line in lines if "/graphql" in line]
    assert len(graphql) == sent, lines[:5]
    for line in graphql:
        assert ACCESS.match(line), line
    # uvicorn's own access log stays off: ours is the only line per request.
    assert not [line for line in server.log.read_text().splitlines() if "HTTP/1.1" in line]
