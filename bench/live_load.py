"""The live dashboard's load: closed-loop readers on raw keep-alive sockets and a crawler
ingesting over HTTP, in one asyncio process, recording every read and every ingest.

A read is stale when it started after k ingested threats' mutations had returned and shows
fewer than base + k threats in a field that counts them all (the dashboard's stats, list
total and severity chart), or fewer than base + k' for a filtered list (k' of those threats
match its filter): every ingested threat is a new insert.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from bench.harness import DASHBOARD, graphql_request
from resolvers.seed import FEEDS

TOKEN = "bench-live-crawler"
INGEST = "mutation($t: [ThreatInput!]!) { ingestThreats(threats: $t) { inserted } }"
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO")
SOURCES = tuple(feed.name for feed in FEEDS)
CATEGORIES = ("vulnerability", "malware", "phishing", "ransomware")
PAGES = (1, 2, 3)
LIST = """query List {{
  threats(page: {page}, limit: 10, filter: {{{filter}}}) {{
    total hasNextPage items {{ id source title severity category publishedAt }}
  }}
}}"""

Filter = tuple[str, str]  # ("severity" | "source" | "category", value)
FILTERS: tuple[Filter, ...] = (
    *(("severity", s) for s in SEVERITIES),
    *(("source", s) for s in SOURCES),
    *(("category", c) for c in CATEGORIES),
)


@dataclass(frozen=True)
class Operation:
    name: str
    query: str
    filter: Filter | None  # None: the dashboard


def operations() -> list[Operation]:
    """The dashboard first, then every filtered list on a few pages."""
    found = [Operation("dashboard", DASHBOARD, None)]
    for kind, value in FILTERS:
        text = f"severity: [{value}]" if kind == "severity" else f'{kind}: "{value}"'
        for page in PAGES:
            found.append(
                Operation(
                    f"{kind}={value} p{page}", LIST.format(page=page, filter=text), (kind, value)
                )
            )
    return found


def count(data: dict[str, Any], op: Operation) -> int:
    """The smallest count of the threats the operation must show."""
    if op.filter is not None:
        return int(data["threats"]["total"])
    return min(
        int(data["stats"]["totalThreats"]),
        int(data["threats"]["total"]),
        sum(int(p["count"]) for p in data["severityBreakdown"]),
    )


@dataclass
class Ingest:
    started: float
    returned: float
    threats: int
    matches: Counter[Filter]
    ok: bool
    detail: str = ""

    @property
    def seconds(self) -> float:
        return self.returned - self.started


# (started, seconds, operation index, X-Cache, count or -1 on an error)
Read = tuple[float, float, int, str, int]


@dataclass
class Recorder:
    port: int
    ops: list[Operation]
    reads: list[Read] = field(default_factory=list)
    ingests: list[Ingest] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    base: dict[Filter | None, int] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    serial: int = 0

    # -- readers -----------------------------------------------------------------------------

    async def _request(
        self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
    ) -> tuple[int, str, bytes]:
        reader, writer = conn
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length, cache = 0, ""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"x-cache":
                cache = value.strip().decode()
        return int(head[9:12]), cache, await reader.readexactly(length)

    async def reader(self, n: int, requests: list[bytes]) -> None:
        """Closed loop: the operations in a fixed shuffled order, the dashboard every other read."""
        conn = await asyncio.open_connection("127.0.0.1", self.port)
        lists = len(self.ops) - 1
        i = n * 7
        while not self.stop.is_set():
            i += 1
            index = 0 if i % 2 else 1 + (i * 13) % lists
            started = time.perf_counter()
            try:
                status, cache, body = await self._request(conn, requests[index])
                elapsed = time.perf_counter() - started
                payload = orjson.loads(body)
                if status != 200 or payload.get("errors"):
                    raise ValueError(f"HTTP {status}: {body[:200]!r}")
                value = count(payload["data"], self.ops[index])
            except (OSError, ValueError, KeyError, TypeError, asyncio.IncompleteReadError) as exc:
                elapsed = time.perf_counter() - started
                self.problems.append(f"{self.ops[index].name}: {type(exc).__name__}: {exc}"[:300])
                self.reads.append((started, elapsed, index, "error", -1))
                conn[1].close()
                conn = await asyncio.open_connection("127.0.0.1", self.port)
                continue
            self.reads.append((started, elapsed, index, cache, value))
        conn[1].close()

    async def read_bases(self) -> None:
        """Each count once, before any ingest: the base of the stale check."""
        conn = await asyncio.open_connection("127.0.0.1", self.port)
        for op in self.ops:
            if op.filter in self.base:
                continue
            _, _, body = await self._request(conn, graphql_request(self.port, op.query))
            self.base[op.filter] = count(orjson.loads(body)["data"], op)
        conn[1].close()

    # -- the crawler -------------------------------------------------------------------------

    def _threats(self, n: int) -> tuple[list[dict[str, Any]], Counter[Filter]]:
        now = dt.datetime.now(dt.UTC)
        threats, matches = [], Counter[Filter]()
        for _ in range(n):
            self.serial += 1
            i = self.serial
            feed = FEEDS[i % len(FEEDS)]
            threat = {
                "source": feed.name,
                "externalId": f"live-{time.time_ns()}-{i}",
                "title": f"Live benchmark threat {i}",
                "severity": SEVERITIES[(i // len(FEEDS)) % len(SEVERITIES)],
                "category": feed.categories[i % len(feed.categories)],
                "publishedAt": (now - dt.timedelta(seconds=i % 3600)).isoformat(),
            }
            threats.append(threat)
            for kind, value in FILTERS:
                if threat[kind] == value:
                    matches[(kind, value)] += 1
        return threats, matches

    async def ingest(self, client: httpx.AsyncClient, n: int) -> Ingest:
        threats, matches = self._threats(n)
        body = orjson.dumps({"query": INGEST, "variables": {"t": threats}})
        started = time.perf_counter()
        try:
            response = await client.post(
                f"http://127.0.0.1:{self.port}/graphql",
                content=body,
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            )
            payload = response.json()
            ok = response.status_code == 200 and not payload.get("errors")
            ok = ok and payload["data"]["ingestThreats"]["inserted"] == n
            detail = "" if ok else f"HTTP {response.status_code}: {str(payload)[:200]}"
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"[:200]
        ingest = Ingest(started, time.perf_counter(), n, matches, ok, detail)
        self.ingests.append(ingest)
        return ingest

    async def crawl(
        self, seconds: float, size: int, every: float, batch: int, offset: float
    ) -> None:
        """`size` threats a second and a `batch` every `every` s (the first `offset` s in),
        each stream on a fixed schedule, for `seconds`."""

        async def stream(n: int, interval: float, start: float) -> None:
            async with httpx.AsyncClient(timeout=60) as client:
                begin = time.perf_counter() + start
                k = 0
                while True:
                    at = begin + k * interval
                    if at >= end:
                        return
                    await asyncio.sleep(max(0.0, at - time.perf_counter()))
                    await self.ingest(client, n)
                    k += 1

        end = time.perf_counter() + seconds
        await asyncio.gather(stream(size, 1.0, 0.0), stream(batch, every, offset))

    # -- what the records say ----------------------------------------------------------------

    def stale(self, reads: list[Read]) -> int:
        """Reads that do not show every threat whose ingest returned before they started."""
        done = sorted((i for i in self.ingests if i.ok), key=lambda i: i.returned)
        returned = [i.returned for i in done]
        totals, per_filter = [0], {f: [0] for f in FILTERS}
        for i in done:
            totals.append(totals[-1] + i.threats)
            for f in FILTERS:
                per_filter[f].append(per_filter[f][-1] + i.matches[f])
        stale = 0
        for started, _, index, _, value in reads:
            if value < 0:
                continue
            k = bisect.bisect_left(returned, started)
            which = self.ops[index].filter
            new = totals[k] if which is None else per_filter[which][k]
            needed = self.base[which] + new
            stale += value < needed
        return stale
