"""Load for end-to-end tests: readers on every server, a crawler, and what their records say
(stale reads, errors, HIT ratio per 1 s window). Times are `time.monotonic()`."""

from __future__ import annotations

import asyncio
import bisect
import time
import uuid
from dataclasses import dataclass, field

import httpx

from tests.conftest import CRAWLER
from tests.servers import Server

BOTH = '{ stats { totalThreats } threats(limit: 1, filter: {source: "nvd"}) { total } }'
STATS = "{ stats { totalThreats } }"
INGEST = "mutation($t: [ThreatInput!]!) { ingestThreats(threats: $t) { inserted } }"
RECOVERED_RATIO = 0.9
WINDOW_MIN_READS = 20


@dataclass
class Read:
    started: float
    ended: float
    server: str
    status: int | None = None
    total: int | None = None
    nvd: int | None = None
    cache: str | None = None
    problem: str | None = None  # an HTTP status, GraphQL errors, or a transport error
    expected: bool = False  # failed because the test killed that server on purpose


@dataclass
class Ingest:
    started: float
    returned: float
    server: str
    ok: bool
    detail: str = ""


Window = tuple[float, int, float]  # (offset of its start, reads, HIT ratio)


@dataclass
class Load:
    """Readers (`readers_per_server`, the last one on `STATS`, the others on `BOTH`) read until
    the block exits; the crawler ingests on the servers in turn every `interval` s while it is
    set. A read is stale when it shows fewer threats than `base_*` plus the ingests that
    returned before it started."""

    servers: list[Server]
    base_total: int
    base_nvd: int
    readers_per_server: int = 4
    interval: float | None = None
    reads: list[Read] = field(default_factory=list)
    ingests: list[Ingest] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Load:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        self._http = httpx.AsyncClient(timeout=10, limits=limits)
        for server in self.servers:
            for i in range(self.readers_per_server):
                query = STATS if i == self.readers_per_server - 1 else BOTH
                self._tasks.append(asyncio.create_task(self._reader(server, query)))
        self._tasks.append(asyncio.create_task(self._crawler()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        assert self._http is not None
        await self._http.aclose()

    @property
    def http(self) -> httpx.AsyncClient:
        assert self._http is not None, "use Load in `async with`"
        return self._http

    async def read(self, server: Server, query: str) -> Read:
        """One read, recorded."""
        incarnation = server.incarnation
        read = Read(time.monotonic(), 0.0, server.name)
        try:
            response = await self.http.post(f"{server.url}/graphql", json={"query": query})
            read.status = response.status_code
            read.cache = response.headers.get("x-cache")
            body = response.json()
            if response.status_code != 200 or body.get("errors"):
                read.problem = f"HTTP {response.status_code}: {str(body)[:200]}"
            else:
                read.total = body["data"]["stats"]["totalThreats"]
                if "threats" in body["data"]:
                    read.nvd = body["data"]["threats"]["total"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            read.problem = f"{type(exc).__name__}: {exc}"[:200]
            read.expected = server.incarnation != incarnation or not server.up
        read.ended = time.monotonic()
        self.reads.append(read)
        return read

    async def _reader(self, server: Server, query: str) -> None:
        while not self._stop.is_set():
            if server.up:
                await self.read(server, query)
                await asyncio.sleep(0.005)
            else:  # killed on purpose: wait until it is back
                await asyncio.sleep(0.05)

    async def _crawler(self) -> None:
        turn = 0
        while not self._stop.is_set():
            interval = self.interval  # the cell may stop the crawler at any await
            if interval is None:
                await asyncio.sleep(0.02)
                continue
            up = [s for s in self.servers if s.up]
            if up:
                await self.ingest(up[turn % len(up)])
                turn += 1
            await asyncio.sleep(interval)

    async def ingest(self, server: Server) -> Ingest:
        """One new nvd threat through `server`; ok when it returned inserted=1."""
        threat = {
            "source": "nvd", "externalId": f"MATRIX-{uuid.uuid4().hex}", "title": "Matrix threat",
            "severity": "HIGH", "category": "vulnerability", "publishedAt": "2026-01-01T00:00:00Z",
        }  # fmt: skip
        started = time.monotonic()
        try:
            response = await self.http.post(
                f"{server.url}/graphql",
                json={"query": INGEST, "variables": {"t": [threat]}},
                headers={"Authorization": f"Bearer {CRAWLER}"},
            )
            body = response.json()
            ok = response.status_code == 200 and not body.get("errors")
            ok = ok and body["data"]["ingestThreats"]["inserted"] == 1
            detail = "" if ok else f"HTTP {response.status_code}: {str(body)[:200]}"
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"[:200]
        ingest = Ingest(started, time.monotonic(), server.name, ok, detail)
        self.ingests.append(ingest)
        return ingest

    # -- what the records say --

    def stale(self) -> list[tuple[Read, int, int]]:
        """(read, the total it needed, the nvd total it needed) for every stale read."""
        returned = sorted(i.returned for i in self.ingests if i.ok)
        found = []
        for read in self.reads:
            if read.total is None:
                continue
            done = bisect.bisect_left(returned, read.started)
            total, nvd = self.base_total + done, self.base_nvd + done
            if read.total < total or (read.nvd is not None and read.nvd < nvd):
                found.append((read, total, nvd))
        return found

    def errors(self) -> list[Read | Ingest]:
        failed: list[Read | Ingest] = [r for r in self.reads if r.problem and not r.expected]
        return failed + [i for i in self.ingests if not i.ok]

    def windows(self, since: float, server: str | None = None) -> list[Window]:
        """Each complete 1 s window from `since`, by the reads' start times."""
        now = time.monotonic() - 0.5  # every read that started before this is recorded
        counts: dict[int, list[int]] = {}
        for read in self.reads:
            if read.started < since or read.started >= now or server not in (None, read.server):
                continue
            slot = counts.setdefault(int(read.started - since), [0, 0])
            slot[0] += 1
            slot[1] += read.cache == "HIT"
        return [
            (float(k), n, hits / n)
            for k, (n, hits) in sorted(counts.items())
            if since + k + 1 <= now
        ]

    def recovered_at(self, since: float, within: float, server: str | None = None) -> float | None:
        """Offset from `since` of the first window starting within `within` s that has
        enough reads and reaches the HIT ratio."""
        for offset, n, ratio in self.windows(since, server):
            if offset < within and n >= WINDOW_MIN_READS and ratio >= RECOVERED_RATIO:
                return offset
        return None

    async def until_warm(self, deadline: float = 15.0) -> None:
        """Until every server that is up has had a window of HITs."""
        since = time.monotonic()
        while time.monotonic() - since < deadline:
            up = [s.name for s in self.servers if s.up]
            if all(self.recovered_at(since, deadline, name) is not None for name in up):
                return
            await asyncio.sleep(0.25)
        raise AssertionError(f"the servers never got warm: windows {self.windows(since)}")

    def ingested_between(
        self, start: float, end: float, *, started_only: bool = False
    ) -> list[Ingest]:
        """Acknowledged ingests that ran between `start` and `end`; `started_only`: that
        started then, and returned whenever (their invalidation met the fault, and may have
        waited out the epoch's window after it was over)."""
        return [
            i
            for i in self.ingests
            if i.ok and start <= i.started < end and (started_only or i.returned <= end)
        ]

    def at(self, moment: float) -> str:
        return f"+{moment - self.t0:.2f}s"

    def describe(self, item: Read | Ingest) -> str:
        if isinstance(item, Ingest):
            return f"ingest on {item.server} {self.at(item.started)}..{self.at(item.returned)} {item.detail}"
        return (
            f"read on {item.server} {self.at(item.started)}..{self.at(item.ended)} "
            f"total={item.total} nvd={item.nvd} X-Cache={item.cache} {item.problem or ''}"
        )


async def health(servers: list[Server]) -> dict[str, str]:
    """`redis_cache` of each server's /health, or what went wrong asking."""
    found = {}
    async with httpx.AsyncClient(timeout=5) as http:
        for server in servers:
            try:
                body = (await http.get(f"{server.url}/health")).json()
                # Connected but not reading Redis (not hearing invalidations) says so.
                found[server.name] = body["redis_cache"]
                if body["redis_cache"] == "connected" and body.get("redis_trusted") is False:
                    found[server.name] += " (not trusted)"
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                found[server.name] = type(exc).__name__
    return found


async def until_disconnected(servers: list[Server], deadline: float = 5.0) -> dict[str, str]:
    """Poll /health until every server says Redis is disconnected, or the deadline passes."""
    stop = time.monotonic() + deadline
    while True:
        seen = await health(servers)
        if all(v == "disconnected" for v in seen.values()) or time.monotonic() > stop:
            return seen
        await asyncio.sleep(0.1)
