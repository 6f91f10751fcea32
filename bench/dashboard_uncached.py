"""The origin cost: the dashboard operation, uncached, against 1,000,000 threats in SQLite
and, with `--postgres URL`, in PostgreSQL (a database holding them, seeded when empty).

    .venv/bin/python -m bench.dashboard_uncached [--threats N] [--seconds S] [--postgres URL]

Writes bench/reports/dashboard_uncached.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess

from bench.harness import (
    DASHBOARD,
    VAJRA,
    ensure_dataset,
    get_json,
    graphql_request,
    load,
    machine,
    server,
    sqlite_url,
    write_report,
)
from resolvers.store import Database


def ensure_postgres(url: str, threats: int) -> str:
    """`url`, seeded with `threats` demo threats when it holds none (vajra seed: COPY, then
    indexes and ANALYZE)."""
    if asyncio.run(_count(url)) < threats:  # the same seed: what is there is not added twice
        env = {**os.environ, "DATABASE_URL": url}
        subprocess.run([VAJRA, "seed", "--threats", str(threats)], check=True, env=env)
    return url


async def _count(url: str) -> int:
    db = Database(url)
    try:
        await db.create_schema()
        return await db.count()
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threats", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--postgres", help="a PostgreSQL DATABASE_URL for a second row")
    args = parser.parse_args()

    engines = {"SQLite": sqlite_url(ensure_dataset(args.threats))}
    if args.postgres:
        engines["PostgreSQL"] = ensure_postgres(args.postgres, args.threats)
    rows = []
    for engine, url in engines.items():
        with server({"DATABASE_URL": url, "CACHE_ENABLED": "false"}) as port:
            request = graphql_request(port, DASHBOARD)
            load(port, request, connections=1, seconds=5, max_requests=3)  # warm the caches
            for connections in (1, 4):
                before = get_json(port, "/api/metrics")["database_queries"]
                result = load(port, request, connections=connections, seconds=args.seconds)
                after = get_json(port, "/api/metrics")["database_queries"]
                per_request = (after - before) / max(result.requests, 1)
                rows.append((engine, result, per_request))
                print(
                    f"{engine} {connections} conn: p50 {result.p50:.1f} ms, "
                    f"p99 {result.p99:.1f} ms, {result.rps:.1f} req/s"
                )

    lines = [
        "# Dashboard operation, uncached",
        "",
        f"One `vajra serve` process (uvicorn, uvloop, httptools) on {' and on '.join(engines)} "
        f"holding {args.threats:,} threats; no cache. The operation asks for stats, the first page of threats and the three "
        f"charts in one request. Closed-loop keep-alive client on the same machine ({machine()}), "
        f"{args.seconds:.0f} s per row.",
        "",
        "Command: `.venv/bin/python -m bench.dashboard_uncached"
        + (" --postgres URL`" if args.postgres else "`"),
        "",
        "| database | connections | requests | errors | p50 ms | p99 ms | req/s | queries / request |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for engine, result, per_request in rows:
        lines.append(
            f"| {engine} | {result.connections} | {result.requests} | {result.errors} | "
            f"{result.p50:.1f} | {result.p99:.1f} | {result.rps:.2f} | {per_request:.1f} |"
        )
    lines += [
        "",
        "This is the origin cost the cache is judged against.",
    ]
    print(write_report("dashboard_uncached", lines))


if __name__ == "__main__":
    main()
