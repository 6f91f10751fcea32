"""The consistency harness of the fault tests: two `vajra serve` processes on one database and
one Redis deployment, readers and a crawler over HTTP, a fault, and the verdict.

The promise under test: never a stale read after a mutation returns, never a failed request
while Redis is down, hung or failing over, and the cache comes back by itself. A read is stale
when it started after an ingest returned and shows a total smaller than that ingest's result
(only inserts happen, so totals only grow). The cache is back when, within 30 s of Redis being
healthy again and after a few more ingests have invalidated what was cached, some 1 s window of
reads is at least 90% `X-Cache: HIT`, every /health says `connected` and Redis holds entries
again. Each fault checks that it really happened (`Fault.evidence`, `Fault.missing`), so that a
pass means something. Users: tests/test_fault_matrix.py (one node), tests/test_topology_faults.py
(Cluster, Sentinel).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from resolvers.seed import seed
from resolvers.store import Database
from tests.conftest import ADMIN, CRAWLER
from tests.load import WINDOW_MIN_READS, Load, health
from tests.servers import Server, base_env

CELL_SECONDS = 60
RECOVERY_WITHIN = 30.0
EPOCH_POLL_MS = 1000


class World(Protocol):
    """Servers on one database and one Redis deployment."""

    servers: list[Server]
    db_path: Path

    async def stored(self) -> int:
        """How many keys of the servers' namespace Redis holds now."""
        ...


W = TypeVar("W", bound=World)


def totals(path: Path) -> tuple[int, int]:
    """(all threats, nvd threats) read from the SQLite file itself."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        everything = conn.execute("SELECT count(*) FROM threats").fetchone()[0]
        nvd = conn.execute("SELECT count(*) FROM threats WHERE source = 'nvd'").fetchone()[0]
    return int(everything), int(nvd)


async def seeded(url: str, threats: int, seed_value: int = 1) -> None:
    db = Database(url)
    try:
        await seed(db, threats, days=30, seed=seed_value)
    finally:
        await db.close()


def server_env(database_url: str, redis_url: str, namespace: str) -> dict[str, str]:
    return base_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        VAJRA_CRAWLER_TOKEN=CRAWLER,
        VAJRA_ADMIN_TOKEN=ADMIN,
        CACHE_NAMESPACE=namespace,
        CACHE_EPOCH_POLL_MS=str(EPOCH_POLL_MS),
    )


@dataclass
class Fault:
    began: float
    healthy: float = 0.0
    evidence: list[str] = field(default_factory=list)  # why we believe the fault happened
    missing: list[str] = field(default_factory=list)  # the fault did not do what it should


def check_covered(
    fault: Fault, load: Load, start: float, end: float, what: str, *, started: bool = False
) -> None:
    inside = load.ingested_between(start, end, started_only=started)
    if inside:
        fault.evidence.append(f"{len(inside)} acknowledged ingests {what}")
    else:
        fault.missing.append(f"no acknowledged ingest {what}")


def check_disconnected(fault: Fault, seen: dict[str, str]) -> None:
    if all(v == "disconnected" for v in seen.values()):
        fault.evidence.append(f"/health during the fault: {seen}")
    else:
        fault.missing.append(f"/health never said disconnected during the fault: {seen}")


async def run_cell(world: W, fault_run: Callable[[W, Load], Awaitable[Fault]]) -> None:
    """Readers and a crawler on `world`'s servers, warm; then the fault; then ingests that must
    be seen; then the verdict (see the module docstring)."""
    base_total, base_nvd = totals(world.db_path)
    async with asyncio.timeout(CELL_SECONDS - 5):
        async with Load(world.servers, base_total, base_nvd) as load:
            await load.until_warm()
            load.interval = 0.25
            await asyncio.sleep(1.0)
            fault = await fault_run(world, load)
            # Redis is healthy: reads alone first (whatever Redis holds now gets served), then
            # a few ingests at 1/s that must be seen; recovery is judged on the reads after them.
            load.interval = None
            await asyncio.sleep(2.0)
            for i in range(3):
                await load.ingest(world.servers[i % 2])
                await asyncio.sleep(1.0)
            settled = time.monotonic()
            within = fault.healthy + RECOVERY_WITHIN - settled
            while time.monotonic() < fault.healthy + RECOVERY_WITHIN + 1:
                back = load.recovered_at(settled, within)
                if back is not None and time.monotonic() - settled > 2:
                    break
                await asyncio.sleep(0.25)
        seen = await health(world.servers)
        stored = await world.stored()
    report(load, fault, settled, seen, stored)


def report(load: Load, fault: Fault, settled: float, seen: dict[str, str], stored: int) -> None:
    stale, errors = load.stale(), load.errors()
    back = load.recovered_at(settled, fault.healthy + RECOVERY_WITHIN - settled)
    windows = load.windows(settled)
    best = max((w for w in windows if w[1] >= WINDOW_MIN_READS), key=lambda w: w[2], default=None)
    hits = sum(r.cache == "HIT" for r in load.reads)
    recovery = "never" if back is None else f"+{settled + back - fault.healthy:.0f}s"
    summary = [
        f"{len(load.reads)} reads ({hits} HIT), {sum(i.ok for i in load.ingests)} ingests; "
        f"fault {load.at(fault.began)}, Redis healthy {load.at(fault.healthy)}, "
        f"last ingest after it {load.at(settled)}",
        f"stale reads: {len(stale)}; errors: {len(errors)}; recovery (a window of >= 90% HIT "
        f"after the last ingest): {recovery} after Redis was healthy (best window {best}); "
        f"/health at the end {seen}; {stored} keys of ours in Redis",
        "fault evidence: " + "; ".join(fault.evidence),
    ]
    if stale:
        after = [item for item in stale if item[0].started >= fault.healthy]
        by_server = {s.name: sum(r.server == s.name for r, _, _ in stale) for s in load.servers}
        summary.append(
            f"  stale before Redis was healthy: {len(stale) - len(after)}, after: {len(after)}; "
            f"by server {by_server}; the last one started {load.at(stale[-1][0].started)}"
        )
        shown = stale[:3] + [item for item in after[:3] if item not in stale[:3]]
        for read, total, nvd in shown + [item for item in stale[-2:] if item not in shown]:
            summary.append(f"  STALE {load.describe(read)} needed total>={total} nvd>={nvd}")
    for item in errors[:5]:
        summary.append(f"  ERROR {load.describe(item)}")
    summary.append("  windows after the last ingest (offset, reads, HIT ratio): " + ", ".join(
        f"({o:.0f}, {n}, {r:.0%})" for o, n, r in windows[:12]
    ))  # fmt: skip
    if errors:  # what the servers logged about them: a bug's traceback, a Redis error
        for server in load.servers:
            lines = server.log_tail(5000).splitlines()
            first = next((i for i, line in enumerate(lines) if "ERROR" in line), None)
            if first is not None:
                summary.append(f"  server {server.name} logged:")
                summary.extend("    " + line for line in lines[first : first + 40])
    if fault.missing:  # when each ingest ran, to see why none fell inside the fault
        summary.append("  ingests: " + "; ".join(load.describe(i) for i in load.ingests))
    text = "\n".join(summary)
    print(text)
    assert not fault.missing, "the fault did not happen as intended: " + "; ".join(fault.missing)
    assert not stale, text
    assert not errors, text
    assert back is not None, text
    assert all(v == "connected" for v in seen.values()), text
    assert stored > 0, text
