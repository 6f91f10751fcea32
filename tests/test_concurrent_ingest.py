"""Several crawlers and readers at once: writers wait their turn, nobody gets an error."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from graph.app import create_app
from graph.settings import Settings
from resolvers.store import Database
from tests.conftest import CRAWLER

INGEST = """mutation($t: [ThreatInput!]!) {
  ingestThreats(threats: $t) { inserted updated unchanged }
}"""
READ = "{ stats { totalThreats } threats(limit: 5) { total } }"
CRAWLERS = 3
BATCHES = 3  # per crawler
BATCH = 1_000
READERS = 6
POLL = 0.05
ROOT = Path(__file__).resolve().parents[1]


def _batch(crawler: int, number: int) -> list[dict[str, Any]]:
    """1,000 threats; each batch overlaps the previous one by half, so some rows are updated."""
    start = (crawler * BATCHES + number) * BATCH // 2
    return [
        {
            "source": f"feed-{n % 3}",
            "externalId": f"T-{n}",
            "title": f"Threat {n}, as crawler {crawler} saw it in batch {number}",
            "severity": "HIGH",
            "category": "malware",
            "publishedAt": "2026-03-14T10:00:00Z",
            "indicators": [{"kind": "DOMAIN", "value": f"host-{n}.example"}],
        }
        for n in range(start, start + BATCH)
    ]


def _distinct_keys() -> int:
    return len(
        {
            (t["source"], t["externalId"])
            for c in range(CRAWLERS)
            for b in range(BATCHES)
            for t in _batch(c, b)
        }
    )


async def _crowd(clients: list[httpx.AsyncClient]) -> list[dict[str, Any]]:
    """Crawlers spread over the clients, readers on every client; every response body."""
    answers: list[dict[str, Any]] = []
    writing = asyncio.Event()
    done = asyncio.Event()

    async def crawl(crawler: int) -> None:
        http = clients[crawler % len(clients)]
        headers = {"Authorization": f"Bearer {CRAWLER}"}
        for number in range(BATCHES):
            body = {"query": INGEST, "variables": {"t": _batch(crawler, number)}}
            writing.set()
            response = await http.post("/graphql", json=body, headers=headers, timeout=60)
            answers.append(response.json())

    async def read(reader: int) -> None:
        http = clients[reader % len(clients)]
        await writing.wait()
        while not done.is_set():
            response = await http.post("/graphql", json={"query": READ}, timeout=60)
            answers.append(response.json())
            await asyncio.sleep(POLL)  # a dashboard polls; a tight loop only loads the event loop

    readers = [asyncio.create_task(read(r)) for r in range(READERS)]
    try:
        await asyncio.gather(*(crawl(c) for c in range(CRAWLERS)))
    finally:
        done.set()
        await asyncio.gather(*readers)
    return answers


def _errors(answers: list[dict[str, Any]]) -> list[Any]:
    return [a["errors"] for a in answers if "errors" in a]


def _count(answers: list[dict[str, Any]], field: str) -> int:
    return sum(1 for a in answers if field in (a.get("data") or {}))


def _settings(url: str) -> Settings:
    return Settings(VAJRA_CRAWLER_TOKEN=CRAWLER, DATABASE_URL=url, CACHE_ENABLED=False)


def _impatient(db: Database) -> None:
    """From now on a writer that has to wait for SQLite's file lock fails within 50 ms."""

    def connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=50")
        cursor.close()

    event.listen(db.engine.sync_engine, "connect", connect)


async def test_concurrent_crawlers_and_readers_all_succeed(db: Database) -> None:
    if db.is_sqlite:
        # In one process writers take turns before they reach SQLite, and readers in WAL mode
        # never wait, so nobody here may need busy_timeout.
        _impatient(db)
        await db.engine.dispose()
    app = create_app(_settings(db.url), db=db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        answers = await _crowd([http])
    assert _errors(answers) == []
    assert _count(answers, "ingestThreats") == CRAWLERS * BATCHES
    assert _count(answers, "stats") >= READERS
    assert await db.count() == _distinct_keys()


def _free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


@contextlib.contextmanager
def _server(url: str, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real `vajra serve` process running this worktree's code."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "VAJRA_CRAWLER_TOKEN": CRAWLER,
        "CACHE_ENABLED": "false",
        "LOG_LEVEL": "warning",
        "PYTHONPATH": str(ROOT),
    }
    vajra = Path(sys.executable).with_name("vajra")
    command = [str(vajra), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-demo"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(logs: list[Path]) -> str:
    return "\n".join(log.read_text() for log in logs)[-4000:]


async def _until_healthy(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient(base_url=base) as http:
        while process.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/health")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    pytest.fail(f"{base} never became healthy:\n{_tail([log])}")


@contextlib.asynccontextmanager
async def _clients(bases: list[str]) -> AsyncIterator[list[httpx.AsyncClient]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(httpx.AsyncClient(base_url=b)) for b in bases]


async def test_two_server_processes_on_one_sqlite_file_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    db = Database(url)
    await db.create_schema()
    ports = _free_ports(2)
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    logs = [tmp_path / f"server-{port}.log" for port in ports]
    try:
        with _server(url, ports[0], logs[0]) as first, _server(url, ports[1], logs[1]) as second:
            for base, process, log in zip(bases, (first, second), logs, strict=True):
                await _until_healthy(base, process, log)
            async with _clients(bases) as clients:
                answers = await _crowd(clients)
        assert _errors(answers) == [], _tail(logs)
        assert _count(answers, "ingestThreats") == CRAWLERS * BATCHES
        assert _count(answers, "stats") >= READERS
        assert await db.count() == _distinct_keys()
    finally:
        await db.close()
