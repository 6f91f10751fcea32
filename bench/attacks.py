"""The attacks of issue 10, sent to a real `vajra serve` (SQLite, a Redis of its own): how each
is answered, how long the answer takes, how slow /health gets meanwhile, and what the server's
and Redis's memory do.

    .venv/bin/python -m bench.attacks [--threats 10000] [--repeat 5]

The issue's own figures (measured on the code before the limits) are quoted beside each row;
they are not re-run here: the worst of them held one server for 130 s and 3.2 GB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import re
import secrets
import statistics
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import redis

from bench.harness import (
    DASHBOARD,
    RedisProcess,
    ensure_dataset,
    machine,
    served,
    sqlite_url,
    write_report,
)
from graph.settings import Settings

CRAWLER = "bench-crawler-" + secrets.token_hex(8)
MAX_BODY_BYTES = Settings().max_body_bytes


def pages(n: int) -> str:
    """`n` aliases of a 100-threat page."""
    return (
        "{"
        + " ".join(f"a{i}: threats(limit: 100) {{ items {{ id title }} }}" for i in range(n))
        + "}"
    )


def searches(n: int) -> str:
    """`n` aliases of `threats`, each with its own `search` (each one a scan)."""
    return (
        "{"
        + " ".join(f'a{i}: threats(filter: {{search: "flaw {i}"}}) {{ total }}' for i in range(n))
        + "}"
    )


def dashboards(n: int) -> str:
    """`n` aliased copies of the dashboard's operation."""
    body = DASHBOARD[DASHBOARD.index("{") + 1 : DASHBOARD.rindex("}")]
    copies = (re.sub(r"^  (\w+)", rf"  d{i}_\1: \1", body, flags=re.MULTILINE) for i in range(n))
    return "query Dashboards {" + "".join(copies) + "}"


def directives(n: int) -> str:
    return "{ stats " + "@include(if: true) " * n + "{ totalThreats } }"


def typenames(n: int) -> str:
    return "{ " + "__typename " * n + "}"


def unterminated(size: int) -> str:
    """A document of about `size` bytes whose string never ends."""
    return '{ threats(filter: {search: "' + "x" * size


def documents() -> list[tuple[str, str, str]]:
    """(attack, the document, what the issue measured on the code before the limits)"""
    return [
        ("10,000 aliases of `threats(limit: 100)`", pages(10_000), "130 s, 387 MB answer, 3.2 GB peak, /health blocked 56 s"),
        ("200 aliases with different `search`", searches(200), "25 s, ~400 database queries"),
        ("1,000 aliases of the dashboard", dashboards(1_000), "3.4 s"),
        ("10,000 directives", directives(10_000), "loop frozen 1.4-3.5 s"),
        ("50,000 `__typename`", typenames(50_000), "loop frozen 1.4-3.5 s"),
        ("9 MB unterminated query (under the body cap)", unterminated(9_000_000), "11 MB: 14.4 s parsing, 1 GB, logged whole"),
        ("11 MB unterminated query", unterminated(11_000_000), "14.4 s parsing, 1 GB, logged whole"),
    ]  # fmt: skip


@dataclass
class Row:
    attack: str
    before: str
    answers: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    health_worst: float = 0.0
    rss_growth: float = 0.0
    extra: str = ""

    def cells(self) -> str:
        answer = ", ".join(sorted(set(self.answers)))
        median = 1000 * statistics.median(self.seconds)
        worst = 1000 * max(self.seconds)
        return (
            f"| {self.attack} | {self.before} | {answer} | {median:.1f} | {worst:.1f} "
            f"| {1000 * self.health_worst:.1f} | {self.rss_growth:+.0f} | {self.extra} |"
        )


def status(pid: int, key: str) -> float:
    """A /proc/PID/status memory figure (VmRSS, VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key}")


def answer_of(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return f"{response.status_code} (not JSON)"
    codes = {e.get("extensions", {}).get("code", "?") for e in body.get("errors") or []}
    return f"{response.status_code} {'/'.join(sorted(codes)) or 'data'}"


async def probing(port: int, attack: Callable[[], Awaitable[None]]) -> float:
    """Run `attack` while /health is asked every 20 ms; the slowest /health answer, seconds."""
    worst = 0.0
    done = asyncio.Event()

    async def probe() -> None:
        nonlocal worst
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            while not done.is_set():
                started = time.perf_counter()
                await http.get("/health")
                worst = max(worst, time.perf_counter() - started)
                await asyncio.sleep(0.02)

    prober = asyncio.create_task(probe())
    try:
        await attack()
    finally:
        done.set()
        await prober
    return worst


async def document_row(port: int, pid: int, name: str, query: str, before: str, repeat: int) -> Row:
    row = Row(name, before)
    body = orjson.dumps({"query": query})
    peak, rss = status(pid, "VmHWM"), status(pid, "VmRSS")

    async def attack() -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            for _ in range(repeat):
                started = time.perf_counter()
                if len(body) > MAX_BODY_BYTES:  # answered before it is read: see what was sent
                    row.answers.append(await send_raw(port, body, len(body)))
                else:
                    response = await http.post(
                        "/graphql", content=body, headers={"content-type": "application/json"}
                    )
                    row.answers.append(answer_of(response))
                row.seconds.append(time.perf_counter() - started)

    row.health_worst = await probing(port, attack)
    row.rss_growth = status(pid, "VmHWM") - peak
    kept = status(pid, "VmRSS") - rss
    row.extra = f"{len(body) / 2**20:.1f} MiB sent; VmRSS {kept:+.0f} MB after the {repeat}"
    return row


async def parallel_row(port: int, pid: int, name: str, query: str, parallel: int) -> Row:
    row = Row(f"{parallel} x {name} at once", "(not measured)")
    body = orjson.dumps({"query": query})
    peak = status(pid, "VmHWM")

    async def one(http: httpx.AsyncClient) -> None:
        started = time.perf_counter()
        response = await http.post(
            "/graphql", content=body, headers={"content-type": "application/json"}
        )
        row.seconds.append(time.perf_counter() - started)
        row.answers.append(answer_of(response))

    async def attack() -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            await asyncio.gather(*(one(http) for _ in range(parallel)))

    row.health_worst = await probing(port, attack)
    row.rss_growth = status(pid, "VmHWM") - peak
    row.extra = f"{parallel * len(body) / 2**20:.1f} MiB sent"
    return row


async def send_raw(port: int, body: bytes | None, size: int, *, chunked: bool = False) -> str:
    """POST `body` (or `size` spaces) in 1 MiB pieces until the server answers or hangs up;
    the status and how much was sent before it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    writer.write(
        f"POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode()
    )
    answer = asyncio.ensure_future(reader.readline())
    spaces = b" " * 2**20
    sent = 0
    try:
        with contextlib.suppress(ConnectionError):
            while sent < size and not answer.done():
                piece = spaces if body is None else body[sent : sent + 2**20]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                await writer.drain()
                sent += len(piece)
        line = await asyncio.wait_for(answer, 60)
    except (ConnectionError, asyncio.IncompleteReadError):
        line = b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    status_code = line.split(b" ")[1].decode() if line.startswith(b"HTTP/1.1") else "reset"
    return f"{status_code} after {sent / 2**20:.0f} MiB sent"


async def body_row(port: int, pid: int, chunked: bool, parallel: int) -> Row:
    framing = "chunked" if chunked else "declared length"
    row = Row(f"{parallel} x 100 MB body, {framing}", "95 -> 296 MB; five at once 779 MB")
    peak = status(pid, "VmHWM")

    async def one() -> None:
        started = time.perf_counter()
        row.answers.append(await send_raw(port, None, 100 * 2**20, chunked=chunked))
        row.seconds.append(time.perf_counter() - started)

    async def attack() -> None:
        await asyncio.gather(*(one() for _ in range(parallel)))

    row.health_worst = await probing(port, attack)
    row.rss_growth = status(pid, "VmHWM") - peak
    return row


async def persisted_row(port: int, pid: int, redis_port: int) -> Row:
    row = Row("ten 10 MB persisted queries", "Redis +120 MB (kept 7 days), server +230 MB")
    client = redis.Redis(port=redis_port)
    used = int(client.info("memory")["used_memory"])
    rss = status(pid, "VmRSS")

    async def attack() -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            for i in range(10):
                query = "{ stats { totalThreats } }" + f"# {i} " + "x" * 10_000_000
                digest = hashlib.sha256(query.encode()).hexdigest()
                extensions = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
                started = time.perf_counter()
                response = await http.post(
                    "/graphql", json={"query": query, "extensions": extensions}
                )
                row.seconds.append(time.perf_counter() - started)
                row.answers.append(answer_of(response))

    row.health_worst = await probing(port, attack)
    row.rss_growth = status(pid, "VmRSS") - rss
    grown = (int(client.info("memory")["used_memory"]) - used) / 2**20
    row.extra = f"Redis {grown:+.1f} MB; growth is VmRSS"
    return row


async def get_flood_row(port: int, pid: int) -> Row:
    row = Row("1,000 distinct 63 KB GET queries", "130 MB kept")
    rss = status(pid, "VmRSS")

    async def attack() -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            for i in range(1_000):
                query = "{ stats { totalThreats } }" + f"# {i} " + "x" * 63_000
                started = time.perf_counter()
                response = await http.get("/graphql?" + urllib.parse.urlencode({"query": query}))
                row.seconds.append(time.perf_counter() - started)
                row.answers.append(answer_of(response))

    row.health_worst = await probing(port, attack)
    row.rss_growth = status(pid, "VmRSS") - rss
    row.extra = "growth is VmRSS after the 1,000"
    return row


async def run(port: int, pid: int, redis_port: int, repeat: int) -> list[Row]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        for _ in range(5):  # the code paths warmed before anything is measured
            await http.post("/graphql", json={"query": DASHBOARD})
    rows = []
    for name, query, before in documents():
        rows.append(await document_row(port, pid, name, query, before, repeat))
    rows.append(await parallel_row(port, pid, "9 MB documents", unterminated(9_000_000), 5))
    rows.append(await body_row(port, pid, chunked=False, parallel=1))
    rows.append(await body_row(port, pid, chunked=True, parallel=1))
    rows.append(await body_row(port, pid, chunked=False, parallel=5))
    rows.append(await persisted_row(port, pid, redis_port))
    rows.append(await get_flood_row(port, pid))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threats", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    database = ensure_dataset(args.threats)
    redis_process = RedisProcess()
    redis_process.start()
    try:
        env = {
            "DATABASE_URL": sqlite_url(database),
            "REDIS_URL": redis_process.url,
            "VAJRA_CRAWLER_TOKEN": CRAWLER,
        }
        with served(env) as (port, pid):
            rows = asyncio.run(run(port, pid, redis_process.port, args.repeat))
    finally:
        redis_process.kill()
    lines = [
        "# The attacks of issue 10, against the limits",
        "",
        f"`.venv/bin/python -m bench.attacks --threats {args.threats} --repeat {args.repeat}`"
        f" on {machine()}: one `vajra serve` (SQLite, {args.threats:,} threats, default"
        " settings), a redis-server of its own, one request at a time while /health is asked"
        " every 20 ms.",
        "",
        "Times are client wall times over loopback, sending the body included. Memory growth is"
        " the server's peak RSS (VmHWM) over the row unless the row says VmRSS. The issue's"
        " figures are from the code before the limits and are not re-run.",
        "",
        "| attack | issue's figure (before) | answer now | median ms | worst ms"
        " | worst /health ms | server MB | notes |",
        "|---|---|---|---|---|---|---|---|",
        *(row.cells() for row in rows),
    ]
    print("\n".join(lines))
    print(f"written to {write_report('attacks', lines)}")


if __name__ == "__main__":
    main()
