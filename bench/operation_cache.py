"""The whole-operation cache against bare ASGI, bare FastAPI, the uncached origin and the
per-resolver path, at 1 and 32 connections, in one run.

    .venv/bin/python -m bench.operation_cache [--seconds 10]

wrk (one thread) on one core, one uvicorn process on the other, SQLite with 1,000,000
threats, a redis-server of the benchmark's own. Writes bench/reports/operation_cache.md.
"""

from __future__ import annotations

import argparse
import tempfile
import urllib.request
from pathlib import Path

import orjson

from bench.harness import (
    DASHBOARD,
    RedisProcess,
    WrkResult,
    ensure_dataset,
    machine,
    server,
    sqlite_url,
    write_report,
    wrk,
)

CONNECTIONS = (1, 32)


def fetch(port: int, body: bytes) -> bytes:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return bytes(response.read())


def measure(
    name: str, port: int, body: bytes, seconds: float, redis: RedisProcess | None = None
) -> list[tuple[WrkResult, float]]:
    for _ in range(3):
        fetch(port, body)  # warm
    rows = []
    for connections in CONNECTIONS:
        before = sum(redis.calls().values()) if redis else 0
        result = wrk(port, body, connections=connections, seconds=seconds)
        calls = (sum(redis.calls().values()) - before) if redis else 0
        rows.append((result, calls / max(result.requests, 1)))
        print(
            f"{name:>32} {connections:>2} conn: {result.rps:9.0f} req/s  p50 {result.p50:7.2f} ms  p99 {result.p99:7.2f} ms  errors {result.errors}  redis/req {calls / max(result.requests, 1):.3f}"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--threats", type=int, default=1_000_000)
    args = parser.parse_args()
    database = sqlite_url(ensure_dataset(args.threats))
    body = orjson.dumps({"query": DASHBOARD})
    redis = RedisProcess()
    redis.start()
    results: dict[str, list[tuple[WrkResult, float]]] = {}
    env = {"DATABASE_URL": database, "REDIS_URL": redis.url}
    try:
        with tempfile.TemporaryDirectory() as folder:
            with server(env) as port:
                answer = fetch(port, body)
                results["operation cache, L1 hit"] = measure(
                    "operation cache, L1 hit", port, body, args.seconds, redis
                )
            with server({**env, "CACHE_LOCAL_MB": "0"}) as port:
                results["operation cache, L2 hit (no L1)"] = measure(
                    "operation cache, L2 hit", port, body, args.seconds, redis
                )
            with server({**env, "CACHE_OPERATIONS": "false"}) as port:
                results["(d) per-resolver cache alone"] = measure(
                    "per-resolver cache", port, body, args.seconds, redis
                )
            with server({"DATABASE_URL": database, "CACHE_ENABLED": "false"}) as port:
                results["(c) uncached"] = measure("uncached", port, body, args.seconds)
            saved = Path(folder) / "body.json"
            saved.write_bytes(answer)
            bare_env = {"BENCH_BODY": str(saved)}
            with server(bare_env, factory="bench.bare_apps:bare_asgi") as port:
                assert fetch(port, body) == answer
                results["(a) bare ASGI, same bytes"] = measure(
                    "bare ASGI", port, body, args.seconds
                )
            with server(bare_env, factory="bench.bare_apps:bare_fastapi") as port:
                results["(b) bare FastAPI route, same bytes"] = measure(
                    "bare FastAPI", port, body, args.seconds
                )
    finally:
        redis.kill()

    lines = [
        "# Dashboard operation: whole-operation cache",
        "",
        f"wrk (1 thread, {args.seconds:.0f} s a row) against one uvicorn process (uvloop, httptools) on the other core; "
        f"SQLite with {args.threats:,} threats; a redis-server of the benchmark's own; {machine()}. "
        "Every server answers the same dashboard operation (stats, a page of threats, the three "
        "charts) with the same bytes; the bare apps return those bytes without looking at the request.",
        "",
        "Command: `.venv/bin/python -m bench.operation_cache`",
        "",
        "| server | connections | req/s | p50 ms | p99 ms | errors | Redis commands / request |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows in results.items():
        for result, calls in rows:
            lines.append(
                f"| {name} | {result.connections} | {result.rps:,.0f} | {result.p50:.2f} | {result.p99:.2f} | "
                f"{result.errors} | {calls:.3f} |"
            )
    warm = results["operation cache, L1 hit"]
    bare = results["(a) bare ASGI, same bytes"]
    fastapi = results["(b) bare FastAPI route, same bytes"]
    uncached = results["(c) uncached"]
    l2 = results["operation cache, L2 hit (no L1)"]
    lines += ["", "| target | 1 connection | 32 connections |", "|---|---:|---:|"]

    def row(label: str, values: list[str]) -> None:
        lines.append(f"| {label} | {' | '.join(values)} |")

    row(
        "warm / bare ASGI (>= 0.5)",
        [f"{w[0].rps / b[0].rps:.2f}" for w, b in zip(warm, bare, strict=True)],
    )
    row(
        "warm / bare FastAPI route (> 1)",
        [f"{w[0].rps / f[0].rps:.2f}" for w, f in zip(warm, fastapi, strict=True)],
    )
    row(
        "warm / uncached (>= 100)",
        [f"{w[0].rps / u[0].rps:,.0f}" for w, u in zip(warm, uncached, strict=True)],
    )
    row("warm p99 ms (<= 5 at 32)", [f"{w[0].p99:.2f}" for w in warm])
    row("Redis commands per L1 hit (0)", [f"{w[1]:.3f}" for w in warm])
    row("Redis commands per L2 hit (<= 1)", [f"{r[1]:.3f}" for r in l2])
    if any(r.errors for r, _ in uncached):
        lines += [
            "",
            "The errors of the uncached rows are wrk's 2-second timeouts: the origin needs longer "
            "than that with 32 requests queued, which is what the cache is for.",
        ]
    print(write_report("operation_cache", lines))


if __name__ == "__main__":
    main()
