"""Stale reads under concurrent mutations: tag generations against naive delete-on-write.

    .venv/bin/python -m bench.stale_reads [--readers 16] [--mutations 1000] [--threats 50000]

16 readers read the dashboard, a filtered list and threats by id in a loop while one crawler
runs 1,000 ingests back to back, in one process, on SQLite and a redis-server of the
benchmark's own. A read that started after k ingests had returned must count at least
base + k threats. Writes bench/reports/stale_reads.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

from bench.harness import RedisProcess, machine, write_report
from bench.workload import NaiveCache, Outcome, run
from cache import Cache, RedisBackend
from resolvers.seed import seed
from resolvers.store import Database


async def one(kind: str, args: argparse.Namespace, redis: RedisProcess, folder: Path) -> Outcome:
    mutations = args.naive_mutations if kind == "naive" else args.mutations
    over_http = kind == "operations"
    db = Database(f"sqlite+aiosqlite:///{folder / (kind + '.db')}")
    await seed(db, args.threats, days=90)
    cls = NaiveCache if kind == "naive" else Cache
    cache = cls(RedisBackend(redis.url), namespace=f"stale-{kind}", schema_version="1")
    try:
        # Back to back, every whole-operation lookup would miss (each ingest changes the
        # dashboard); 20 ms apart, readers get whole-operation hits between ingests.
        interval = 0.02 if over_http else 0.0
        return await run(
            db,
            cache,
            readers=args.readers,
            mutations=mutations,
            interval=interval,
            over_http=over_http,
        )
    finally:
        await cache.close()
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readers", type=int, default=16)
    parser.add_argument("--mutations", type=int, default=1000)
    parser.add_argument("--threats", type=int, default=10_000)
    # The naive design is slow here (every ingest scans and every read then misses), so its
    # row runs fewer ingests: its stale rate, not its count, is the comparison.
    parser.add_argument("--naive-mutations", type=int, default=200)
    args = parser.parse_args()
    redis = RedisProcess()
    redis.start()
    results = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            for kind in ("generations", "operations", "naive"):
                results[kind] = asyncio.run(one(kind, args, redis, Path(folder)))
                r = results[kind]
                print(
                    f"{kind}: {r.reads} reads, {r.stale} stale ({r.stale / max(r.reads, 1):.2%}), {r.errors} errors"
                )
    finally:
        redis.kill()
    lines = [
        "# Stale reads under concurrent mutations",
        "",
        f"{args.readers} concurrent readers against {args.mutations:,} ingests of one threat each "
        f"({args.naive_mutations:,} for the naive design, which is much slower here), back to "
        f"back, in one process (uvloop off, asyncio), on SQLite seeded with {args.threats:,} threats "
        f"and a redis-server of the benchmark's own; {machine()}. Each read asks for the dashboard "
        "(stats, a page of threats, the three charts), a list filtered by severity, one filtered by "
        "source and three threats by id. A read is stale when it started after k ingests had "
        "returned and one of its counts of all threats (stats, the list total, the severity chart) "
        "is below base + k. The second row sends the dashboard alone through the ASGI app, one "
        "ingest every 20 ms "
        "(in process, httpx), so reads are whole-operation hits from the local tier or Redis; its "
        "hit rate counts operations.",
        "",
        f"Command: `{' '.join(['.venv/bin/python -m bench.stale_reads', *sys.argv[1:]])}`",
        "",
        "| design | seconds | reads | stale reads | stale % | errors | ingests | hit rate | served without computing | DB queries / read | read p50 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = {
        "generations": "tag generations (this cache), field by field",
        "operations": "tag generations, over HTTP with the whole-operation cache (L1 + L2)",
        "naive": "naive delete-on-write (the original)",
    }
    for kind, r in results.items():
        p50 = 1000 * statistics.median(r.read_latencies) if r.read_latencies else float("nan")
        lines.append(
            f"| {names[kind]} | {r.seconds:.0f} | {r.reads:,} | {r.stale:,} | {r.stale / max(r.reads, 1):.2%} | {r.errors} | "
            f"{r.mutations:,} | {r.hit_rate:.1%} | {r.served_rate:.1%} | {r.database_queries / max(r.reads, 1):.2f} | {p50:.1f} |"
        )
    lines += [
        "",
        "The naive design deletes the families after the commit, but a reader that queried the "
        "database before the commit stores its older answer after the delete, where later "
        "readers find it until the next ingest or the TTL. With tag generations that answer is "
        "stored under the generations read before the query, which the ingest has replaced, so "
        "no later reader accepts it.",
    ]
    print(write_report("stale_reads", lines))


if __name__ == "__main__":
    main()
