"""Staleness across processes: `vajra serve --workers 2`, readers on keep-alive connections,
a crawler ingesting once a second. A read is stale when it started after an ingest returned
and does not count it; each stale read is classed as same-process (the reader's worker made
the ingest: must never happen) or cross-process (the other worker had not yet heard of it),
with its delay since the ingest returned.

    .venv/bin/python -m bench.cross_process [--seconds 30] [--readers 8]

Writes bench/reports/cross_process.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.harness import RedisProcess, machine, server, sqlite_url, write_report
from resolvers.seed import seed
from resolvers.store import Database

TOKEN = "bench-crawler"
READ = orjson.dumps(
    {"query": "{ stats { totalThreats } trend(days: 10) { count } threats(limit: 10) { total } }"}
)
INGEST = "mutation($t: [ThreatInput!]!) { ingestThreats(threats: $t) { inserted } }"


@dataclass
class Read:
    started: float
    total: int
    node: str


async def _post(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    port: int,
    body: bytes,
    token: str | None = None,
) -> tuple[dict[str, str], bytes]:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    writer.write(
        f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{auth}"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    headers = {}
    for line in head.split("\r\n")[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return headers, await reader.readexactly(int(headers.get("content-length", "0")))


async def run(
    port: int, readers: int, seconds: float
) -> tuple[list[Read], list[tuple[float, str]], int]:
    reads: list[Read] = []
    ingests: list[tuple[float, str]] = []
    stop = time.perf_counter() + seconds
    r, w = await asyncio.open_connection("127.0.0.1", port)
    _, body = await _post(r, w, port, READ)
    base = orjson.loads(body)["data"]["stats"]["totalThreats"]
    w.close()

    # Keep-alive connections stick to the worker that accepted them: open more than needed
    # and keep as many on each worker.
    pool: dict[str, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}
    for _ in range(readers * 8):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        headers, _ = await _post(r, w, port, READ)
        pool.setdefault(headers.get("x-cache-node", "?"), []).append((r, w))
    chosen = []
    for connections in pool.values():
        chosen += connections[: max(1, readers // max(len(pool), 1))]
        for _, w in connections[max(1, readers // max(len(pool), 1)) :]:
            w.close()

    async def reader(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            headers, body = await _post(r, w, port, READ)
            reads.append(
                Read(
                    started,
                    orjson.loads(body)["data"]["stats"]["totalThreats"],
                    headers.get("x-cache-node", "?"),
                )
            )
            await asyncio.sleep(0.002)
        w.close()

    async def crawler() -> None:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        i = 0
        began = time.perf_counter()
        while time.perf_counter() < stop - 1:
            i += 1
            threat = {
                "source": "nvd", "externalId": f"cross-{os.getpid()}-{time.time_ns()}", "title": f"Cross {i}",
                "severity": "HIGH", "category": "vulnerability", "publishedAt": "2026-01-01T00:00:00Z",
            }  # fmt: skip
            headers, _ = await _post(
                r, w, port, orjson.dumps({"query": INGEST, "variables": {"t": [threat]}}), TOKEN
            )
            ingests.append((time.perf_counter(), headers.get("x-cache-node", "?")))
            await asyncio.sleep(max(0.0, began + i - time.perf_counter()))
        w.close()

    await asyncio.gather(crawler(), *(reader(r, w) for r, w in chosen))
    return reads, ingests, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--readers", type=int, default=8)
    parser.add_argument("--threats", type=int, default=20_000)
    args = parser.parse_args()
    redis = RedisProcess()
    redis.start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "cross.db"

            async def load() -> None:
                db = Database(sqlite_url(path))
                await seed(db, args.threats, days=30)
                await db.close()

            asyncio.run(load())
            env = {
                "DATABASE_URL": sqlite_url(path),
                "REDIS_URL": redis.url,
                "VAJRA_CRAWLER_TOKEN": TOKEN,
                "CACHE_NODE_HEADER": "true",  # x-cache-node: which worker answered
            }
            with server(env, workers=2) as port:
                time.sleep(1)  # both workers subscribed
                reads, ingests, base = asyncio.run(run(port, args.readers, args.seconds))
    finally:
        redis.kill()
    ingests.sort()
    same, cross, delays = 0, 0, []
    for read in reads:
        returned = [t for t in ingests if t[0] < read.started]
        if read.total >= base + len(returned):
            continue
        first_unseen = returned[read.total - base]
        delays.append(1000 * (read.started - first_unseen[0]))
        if first_unseen[1] == read.node:
            same += 1
        else:
            cross += 1
    nodes = sorted({r.node for r in reads})
    delays.sort()
    p99 = delays[min(len(delays) - 1, int(0.99 * len(delays)))] if delays else 0.0
    lines = [
        "# Staleness across processes",
        "",
        f"`vajra serve --workers 2` (nodes seen: {', '.join(nodes)}), a redis-server of the benchmark's own, "
        f"SQLite with {args.threats:,} threats; {args.readers} readers on keep-alive connections reading "
        "stats, the trend and a threats page (a whole-operation cache hit, from L1 when warm) every 2 ms; "
        f"a crawler ingesting one threat a second, for {args.seconds:.0f} s; {machine()}.",
        "",
        "Command: `.venv/bin/python -m bench.cross_process`",
        "",
        "| reads | ingests | stale, same process (target 0) | stale, other process | delay p50 ms | delay p99 ms (target <= 10) | delay max ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(reads):,} | {len(ingests)} | {same} | {cross} | "
        f"{statistics.median(delays) if delays else 0:.2f} | {p99:.2f} | {max(delays) if delays else 0:.2f} |",
        "",
        "The delay of a stale read is the time from the ingest's response to the start of the read "
        "that missed it: how long the other worker kept answering from its L1 before the "
        "invalidation message reached it.",
    ]
    if not delays:
        per_node = len(reads) / max(len(nodes), 1) / args.seconds
        lines += [
            "",
            f"No read was stale. Each worker answered about {per_node:,.0f} reads a second here, one "
            f"every {1000 / max(per_node, 1):.2f} ms on average, so a window in which a worker still "
            "served a superseded L1 entry after an ingest returned would have had to be shorter "
            "than that to go unseen, for every one of the ingests.",
        ]
    print(write_report("cross_process", lines))


if __name__ == "__main__":
    main()
