"""The per-resolver cache against its origin and against bare Strawberry, in one run.

    .venv/bin/python -m bench.dashboard_cached [--threats N] [--seconds S]

Four servers in turn, each one uvicorn process on the same SQLite file of 1,000,000 threats:
uncached; cached and warm (Redis of the benchmark's own); the same operation with in-memory
resolvers and no cache (what GraphQL execution alone costs); and cached while Redis is
killed mid-run. Writes bench/reports/dashboard_cached.md.
"""

from __future__ import annotations

import argparse
import threading

from bench.harness import (
    DASHBOARD,
    LoadResult,
    RedisProcess,
    ensure_dataset,
    get_json,
    graphql_request,
    load,
    machine,
    server,
    sqlite_url,
    write_report,
)

CONNECTIONS = (1, 16)


def measure(
    port: int, seconds: float, redis: RedisProcess | None = None
) -> list[tuple[LoadResult, float, float]]:
    """(result, database queries per request, Redis commands per request) per connection count."""
    request = graphql_request(port, DASHBOARD)
    load(port, request, connections=4, seconds=2, max_requests=50)  # warm: caches, page cache
    rows = []
    for connections in CONNECTIONS:
        queries = get_json(port, "/api/metrics")["database_queries"]
        calls = sum(redis.calls().values()) if redis else 0
        result = load(port, request, connections=connections, seconds=seconds)
        queries = get_json(port, "/api/metrics")["database_queries"] - queries
        calls = (sum(redis.calls().values()) - calls) if redis else 0
        done = max(result.requests, 1)
        rows.append((result, queries / done, calls / done))
        print(
            f"  {connections:>2} conn: p50 {result.p50:.2f} ms, p99 {result.p99:.2f} ms, {result.rps:.0f} req/s, errors {result.errors}"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threats", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    database = sqlite_url(ensure_dataset(args.threats))
    redis = RedisProcess()
    redis.start()
    try:
        print("uncached")
        with server({"DATABASE_URL": database, "CACHE_ENABLED": "false"}) as port:
            uncached = measure(port, max(args.seconds, 10))
        print("in-memory resolvers, no cache")
        with server({"DATABASE_URL": database}, factory="bench.inmemory_app:create_app") as port:
            memory = measure(port, args.seconds)
        print("cached, warm")
        # The per-resolver path alone: the whole-operation cache is measured by operation_cache.
        env = {"DATABASE_URL": database, "REDIS_URL": redis.url, "CACHE_OPERATIONS": "false"}
        with server(env) as port:
            warm = measure(port, args.seconds, redis)
            commands = redis.calls()
            stats = get_json(port, "/api/cache/stats")
        print("cached, Redis killed mid-run")
        with server(env) as port:
            request = graphql_request(port, DASHBOARD)
            load(port, request, connections=4, seconds=1, max_requests=20)
            killer = threading.Timer(args.seconds / 2, redis.kill)
            killer.start()
            outage = load(port, request, connections=16, seconds=args.seconds)
            killer.join()
            health = get_json(port, "/health")
            print(
                f"  outage: {outage.requests} requests, {outage.errors} errors, p99 {outage.p99:.1f} ms; health {health}"
            )
    finally:
        redis.kill()

    lines = [
        "# Dashboard operation: per-resolver cache",
        "",
        f"One uvicorn process per row group (uvloop, httptools) on SQLite with {args.threats:,} threats, "
        f"measured in one run, one after the other. Closed-loop keep-alive client on the same "
        f"machine ({machine()}); {args.seconds:.0f} s per row. Redis is a redis-server of the "
        f"benchmark's own, so its command counts are this run's alone.",
        "",
        "Command: `.venv/bin/python -m bench.dashboard_cached`",
        "",
        "| server | connections | requests | errors | p50 ms | p99 ms | req/s | DB queries / req | Redis commands / req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows in (
        ("uncached", uncached),
        ("in-memory resolvers, no cache", memory),
        ("cached, warm", warm),
    ):
        for result, queries, calls in rows:
            lines.append(
                f"| {name} | {result.connections} | {result.requests} | {result.errors} | {result.p50:.2f} | "
                f"{result.p99:.2f} | {result.rps:.1f} | {queries:.2f} | {calls:.2f} |"
            )
    ratios = []
    for i, connections in enumerate(CONNECTIONS):
        speedup = warm[i][0].rps / uncached[i][0].rps
        overhead = warm[i][0].rps / memory[i][0].rps
        ratios.append(f"| {connections} | {speedup:.0f}x | {overhead:.2f} |")
    missed = [
        (connections, warm[i][0].rps / memory[i][0].rps)
        for i, connections in enumerate(CONNECTIONS)
        if warm[i][0].rps / memory[i][0].rps < 0.8
    ]
    notes = [
        f"Target missed at {c} connection(s): {ratio:.2f} against 0.8, short by "
        f"{(0.8 - ratio) / 0.8:.0%}. With one request in flight the server waits for Redis: the "
        "MGET round trip (about 0.1 ms on loopback with redis-py) and the per-field cache work "
        "(key, generation check, typed decoding) lie on every request's critical path, where "
        "the in-memory reference has none. With many requests in flight the server is CPU-bound "
        "and one MGET serves several operations, so the ratio rises. The in-process L1 of the "
        "whole-operation cache issue removes the round trip from the hot path."
        for c, ratio in missed
    ]
    lines += [
        "",
        "| connections | warm / uncached throughput (target >= 50x) | warm / in-memory throughput (target >= 0.8) |",
        "|---:|---:|---:|",
        *ratios,
        "",
        *notes,
        "",
        f"Redis commands over the whole warm server's life: `{commands}`. At one connection every "
        "warm request costs exactly one MGET (one round trip): the dashboard's five fields are "
        "collected in one event-loop tick. At 16 connections the same per-tick batching serves "
        "several concurrent operations with one MGET, hence fewer than one command per request.",
        "",
        f"Hit rate reported by `/api/cache/stats` after the warm rows: {stats['hit_rate']:.4f} "
        f"({stats['hits']} hits, {stats['misses']} misses).",
        "",
        f"Redis killed half-way through a {args.seconds:.0f} s run at 16 connections: "
        f"{outage.requests} requests, **{outage.errors} errors**, p50 {outage.p50:.1f} ms, "
        f"p99 {outage.p99:.1f} ms; `/health` afterwards: `{health}`.",
    ]
    print(write_report("dashboard_cached", lines))


if __name__ == "__main__":
    main()
