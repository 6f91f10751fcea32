"""The origin cost: the dashboard operation, uncached, against 1,000,000 threats in SQLite.

    .venv/bin/python -m bench.dashboard_uncached [--threats N] [--seconds S]

Writes bench/reports/dashboard_uncached.md.
"""

from __future__ import annotations

import argparse

from bench.harness import (
    DASHBOARD,
    ensure_dataset,
    get_json,
    graphql_request,
    load,
    machine,
    server,
    sqlite_url,
    write_report,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threats", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()

    path = ensure_dataset(args.threats)
    rows = []
    with server({"DATABASE_URL": sqlite_url(path), "CACHE_ENABLED": "false"}) as port:
        request = graphql_request(port, DASHBOARD)
        load(port, request, connections=1, seconds=5, max_requests=3)  # warm the page cache
        for connections in (1, 4):
            before = get_json(port, "/api/metrics")["database_queries"]
            result = load(port, request, connections=connections, seconds=args.seconds)
            after = get_json(port, "/api/metrics")["database_queries"]
            per_request = (after - before) / max(result.requests, 1)
            rows.append((result, per_request))
            print(
                f"{connections} conn: p50 {result.p50:.1f} ms, p99 {result.p99:.1f} ms, {result.rps:.1f} req/s"
            )

    lines = [
        "# Dashboard operation, uncached",
        "",
        f"One `vajra serve` process (uvicorn, uvloop, httptools) on SQLite holding {args.threats:,} "
        f"threats; no cache. The operation asks for stats, the first page of threats and the three "
        f"charts in one request. Closed-loop keep-alive client on the same machine ({machine()}), "
        f"{args.seconds:.0f} s per row.",
        "",
        "Command: `.venv/bin/python -m bench.dashboard_uncached`",
        "",
        "| connections | requests | errors | p50 ms | p99 ms | req/s | database queries / request |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result, per_request in rows:
        lines.append(
            f"| {result.connections} | {result.requests} | {result.errors} | {result.p50:.1f} | "
            f"{result.p99:.1f} | {result.rps:.2f} | {per_request:.1f} |"
        )
    lines += [
        "",
        "This is the origin cost the cache is judged against.",
    ]
    print(write_report("dashboard_uncached", lines))


if __name__ == "__main__":
    main()
