"""`scripts/services cluster` and `scripts/services sentinel` start what the README says, on
its fixed ports, and a server pointed at the URL they print caches there."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import _unavailable
from tests.servers import ROOT, Server, base_env

pytestmark = pytest.mark.redis

SCRIPT = str(ROOT / "scripts" / "services")
QUERY = "{ stats { totalThreats } }"


def services(*args: str) -> str:
    done = subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def running(port: int) -> bool:
    done = subprocess.run(
        ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() == "PONG"


@pytest.fixture(params=["cluster", "sentinel"])
def deployment(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    if shutil.which("redis-server") is None:
        _unavailable("redis-server is not on PATH", "install Redis")
    kind = request.param
    probe = 7000 if kind == "cluster" else 26390
    already = running(probe)  # someone's own group: used, and left running
    printed = services(kind)
    try:
        url = next(line for line in printed.splitlines() if line.startswith("REDIS_URL="))
        yield kind, url.removeprefix("REDIS_URL=")
    finally:
        if not already:
            services(f"{kind}-stop")


async def test_a_server_on_the_printed_url_caches_there(
    deployment: tuple[str, str], tmp_path: Path
) -> None:
    kind, url = deployment
    env = base_env(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'vajra.db'}",
        REDIS_URL=url,
        CACHE_NAMESPACE="services-" + kind,
    )
    server = Server(kind, env, tmp_path)
    server.start()
    try:
        await server.wait_healthy()
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            # Healthy is not yet trusted: until its listener is live (and, on Sentinel, the
            # master confirmed), a server answers from the origin, uncached.
            deadline = time.monotonic() + 15
            while not (health := (await http.get("/health")).json()).get("redis_trusted"):
                assert time.monotonic() < deadline, health
                await asyncio.sleep(0.1)
            assert health["redis_cache"] == "connected", health
            assert health["redis_topology"] == kind, health
            if kind == "cluster":
                assert health["redis_nodes"] == 3, health
            seen = []
            for _ in range(3):
                response = await http.get("/graphql", params={"query": QUERY})
                assert response.status_code == 200, response.text
                seen.append(response.headers.get("x-cache"))
            assert seen[-1] == "HIT", seen
    finally:
        server.stop()
