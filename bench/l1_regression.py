"""The whole-operation L1 hit, this tree (NEW) against an older one (OLD), side by side.

    .venv/bin/python -m bench.l1_regression [--old /work/wt-old] [--seconds 10]

`--old` is a worktree of the previous code (`git worktree add /work/wt-old 3c61080`). Both
run with this venv, each with PYTHONPATH set to its own tree, on a SQLite file seeded by
that tree and a redis-server of the benchmark's own (one namespace per version). Rounds
alternate OLD, NEW, OLD, NEW, ...; every round starts a fresh server, warms the dashboard
until X-Cache: HIT, runs wrk (one thread) at 1 and 32 connections and stops the server.
Writes bench/reports/l1_regression.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson
import redis

from bench.harness import (
    DASHBOARD,
    ROOT,
    VAJRA,
    RedisProcess,
    WrkResult,
    machine,
    server,
    sqlite_url,
    write_report,
    wrk,
)

CONNECTIONS = (1, 32)
TARGET = 0.9


@dataclass
class Row:
    round: int
    version: str
    result: WrkResult
    calls: dict[str, int]  # Redis commands during the row
    seconds: float
    after: str  # X-Cache of a request right after the row

    @property
    def per_request(self) -> float:
        others = sum(v for k, v in self.calls.items() if k != "ping")
        return others / max(self.result.requests, 1)

    @property
    def pings(self) -> float:
        return self.calls.get("ping", 0) / self.seconds

    @property
    def others(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.calls.items()) if v and k != "ping")


def post(port: int, body: bytes) -> tuple[str, int]:
    """(X-Cache, response length) of one dashboard request."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.headers.get("X-Cache", ""), len(response.read())


def warm(port: int, body: bytes) -> int:
    deadline = time.monotonic() + 30
    while (answer := post(port, body))[0] != "HIT":
        if time.monotonic() > deadline:
            raise RuntimeError(f"no X-Cache: HIT on port {port}")
        time.sleep(0.05)
    return answer[1]


def calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items() if k != "cmdstat_info"}


def imported_from(root: Path) -> str:
    """Where `cache` comes from with PYTHONPATH=root: it must be root's own."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = "import cache, graph, resolvers as r; print(cache.__file__, graph.__file__, r.__file__)"
    run = [sys.executable, "-c", code]  # from /, as `vajra` runs: no cwd on sys.path
    out = subprocess.run(run, env=env, cwd="/", capture_output=True, text=True)
    files = out.stdout.split()
    if len(files) != 3 or not all(Path(f).is_relative_to(root) for f in files):
        raise RuntimeError(f"PYTHONPATH={root} imports {files or out.stderr}")
    return files[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--old", type=Path, default=Path("/work/wt-old"))
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threats", type=int, default=20_000)
    args = parser.parse_args()
    trees = {"OLD": args.old.resolve(), "NEW": ROOT}
    commits = {
        name: subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        for name, root in trees.items()
    }  # fmt: skip
    for name, root in trees.items():
        print(f"{name} {commits[name]}: cache from {imported_from(root)}")
    body = orjson.dumps({"query": DASHBOARD})
    rows: list[Row] = []
    sizes: dict[str, int] = {}
    redis_server = RedisProcess()
    redis_server.start()
    client = redis.Redis(port=redis_server.port, socket_timeout=2)
    try:
        with tempfile.TemporaryDirectory() as folder:
            envs = {}
            for name, root in trees.items():
                database = sqlite_url(Path(folder) / f"{name}.db")
                envs[name] = {
                    "PYTHONPATH": str(root),
                    "DATABASE_URL": database,
                    "REDIS_URL": redis_server.url,
                    "CACHE_NAMESPACE": f"l1{name.lower()}",
                    # No entry may expire during a run: an L1 entry read back from Redis by the
                    # next round's server would otherwise expire mid-row (60 s for stats).
                    **{f"CACHE_TTL_{kind}": "3600" for kind in ("STATS", "THREATS", "CHARTS")},
                }
                seed = [VAJRA, "seed", "--threats", str(args.threats)]
                subprocess.run(seed, check=True, env={**os.environ, **envs[name]})
            for round_ in range(1, args.rounds + 1):
                for name in trees:
                    with server(envs[name]) as port:
                        sizes[name] = warm(port, body)
                        for connections in CONNECTIONS:
                            before, started = calls(client), time.monotonic()
                            result = wrk(port, body, connections=connections, seconds=args.seconds)
                            elapsed, after = time.monotonic() - started, calls(client)
                            delta = {k: v - before.get(k, 0) for k, v in after.items()}
                            row = Row(round_, name, result, delta, elapsed, post(port, body)[0])
                            rows.append(row)
                            print(
                                f"round {round_} {name} {connections:>2} conn: {result.rps:9.0f} req/s  "
                                f"p50 {result.p50:6.2f} ms  p99 {result.p99:6.2f} ms  errors {result.errors}  "
                                f"redis/req {row.per_request:.4f} ({row.others or '-'})  "
                                f"ping/s {row.pings:.1f}  after: {row.after}"
                            )
    finally:
        client.close()
        redis_server.kill()

    lines = [
        "# Whole-operation L1 hit: NEW against OLD",
        "",
        f"NEW is this tree ({commits['NEW']}), OLD is `{trees['OLD']}` ({commits['OLD']}); both run "
        "with this venv and PYTHONPATH set to their own tree. wrk (1 thread, "
        f"{args.seconds:.0f} s a row) against one `vajra serve` process on the other core; SQLite "
        f"with {args.threats:,} threats seeded by each tree; a redis-server of the benchmark's own; "
        f"{machine()}. CACHE_TTL_* = 3600 s so that nothing expires during the run. Rounds alternate OLD, NEW; each round starts a fresh server and warms the "
        f"dashboard operation until `X-Cache: HIT` (response: OLD {sizes['OLD']:,} bytes, NEW "
        f"{sizes['NEW']:,} bytes).",
        "",
        f"Command: `.venv/bin/python -m bench.l1_regression --old {trees['OLD']} --seconds {args.seconds:g} --rounds {args.rounds}`",
        "",
        "| round | version | connections | req/s | p50 ms | p99 ms | errors | Redis commands / request (no PING) | which | PING / s | X-Cache after |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for row in rows:
        r = row.result
        lines.append(
            f"| {row.round} | {row.version} | {r.connections} | {r.rps:,.0f} | {r.p50:.3f} | "
            f"{r.p99:.3f} | {r.errors} | {row.per_request:.4f} | {row.others or '-'} | "
            f"{row.pings:.1f} | {row.after} |"
        )
    lines += [
        "",
        f"| connections | OLD median req/s | NEW median req/s | NEW/OLD (target >= {TARGET}) | met |",
        "|---:|---:|---:|---:|---|",
    ]
    for connections in CONNECTIONS:
        medians = {
            name: statistics.median(
                r.result.rps for r in rows if r.version == name and r.result.connections == connections
            )
            for name in trees
        }  # fmt: skip
        ratio = medians["NEW"] / medians["OLD"]
        lines.append(
            f"| {connections} | {medians['OLD']:,.0f} | {medians['NEW']:,.0f} | {ratio:.3f} | "
            f"{'yes' if ratio >= TARGET else 'NO'} |"
        )
    new = [row for row in rows if row.version == "NEW"]
    pings = statistics.median(row.pings for row in new)
    lines += [
        "",
        f"NEW, Redis commands per L1 hit: {statistics.median(row.per_request for row in new):.4f} "
        f"(median over rows; PING left out); PING: {pings:.1f} a second (median over rows), the "
        "invalidation listener's heartbeat, every window / 5, whatever the load.",
    ]
    print(write_report("l1_regression", lines))


if __name__ == "__main__":
    main()
