"""The live dashboard: 16 readers of one `vajra serve` with and without a crawler ingesting one
threat a second and a 1,000-threat batch every 10 s, on 1,000,000 threats (SQLite and
PostgreSQL), and the same readers while entries expire (stale-while-revalidate).

    .venv/bin/python -m bench.live_dashboard [--seconds 60] [--warmup 10] [--readers 16]
        [--threats 1000000] [--engines sqlite,postgresql] [--quick]

Writes bench/reports/live_dashboard.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.harness import (
    ROOT,
    RedisProcess,
    ensure_dataset,
    graphql_request,
    machine,
    server,
    sqlite_url,
    write_report,
)
from bench.live_load import TOKEN, Recorder, operations
from bench.live_report import EXPIRING, Phase, Run, Snapshot, report, summarize

POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/vajra_bench_live"
SETTLE = 3.0  # unmeasured seconds after a crawler phase: its last refreshes finish


async def drive(port: int, phases: list[tuple[str, float]], args: argparse.Namespace) -> Run:
    """Readers from the start; after the warm-up, each phase measured in turn."""
    ops = operations()
    rec = Recorder(port, ops)
    await rec.read_bases()
    requests = [graphql_request(port, op.query) for op in ops]
    readers = [asyncio.create_task(rec.reader(n, requests)) for n in range(args.readers)]
    results = []
    try:
        await asyncio.sleep(args.warmup)
        for kind, seconds in phases:
            before = await Snapshot.take(port)
            if kind == "crawler":
                await rec.crawl(seconds, 1, 10.0, 1000, 5.0)
            else:
                await asyncio.sleep(seconds)
            after = await Snapshot.take(port)
            results.append(Phase(kind, before, after))
            if kind == "crawler":
                await asyncio.sleep(SETTLE)
    finally:
        rec.stop.set()
        await asyncio.gather(*readers, return_exceptions=True)
    idle = []
    if any(kind == "crawler" for kind, _ in phases):
        # The mutation path alone: three batches and three single threats with no reader.
        async with httpx.AsyncClient(timeout=60) as client:
            for n in (1000, 1000, 1000, 1, 1, 1):
                idle.append(await rec.ingest(client, n))
                await asyncio.sleep(1.0)  # the refresh after each write is not measured
    for phase in results:
        summarize(phase, rec)
    return Run(results, idle, rec.base[None])


def run_config(
    env: dict[str, str], phases: list[tuple[str, float]], args: argparse.Namespace
) -> Run:
    redis = RedisProcess()
    redis.start()
    try:
        # PYTHONPATH: the server runs this tree's code whichever checkout installed `vajra`.
        full = {
            "REDIS_URL": redis.url,
            "VAJRA_CRAWLER_TOKEN": TOKEN,
            "PYTHONPATH": str(ROOT),
            **env,
        }
        with server(full) as port:
            return asyncio.run(drive(port, phases, args))
    finally:
        redis.kill()


@contextlib.contextmanager
def sqlite_copy(threats: int) -> Iterator[Path]:
    """A copy of the data set: the crawler's threats never reach the shared file."""
    source = ensure_dataset(threats)
    with tempfile.TemporaryDirectory(dir=source.parent) as folder:
        copy = Path(folder) / source.name
        shutil.copyfile(source, copy)
        yield copy


def ensure_postgres(threats: int) -> None:
    """Our own database, seeded once (`vajra seed` adds nothing twice)."""
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc"]
    exists = subprocess.run(
        [*psql, "select 1 from pg_database where datname = 'vajra_bench_live'", "test"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if not exists:
        subprocess.run([*psql, "create database vajra_bench_live", "test"], check=True)
    found = subprocess.run(
        [*psql, "select count(*) from threats", "vajra_bench_live"], capture_output=True, text=True
    ).stdout.strip()
    if not found.isdigit() or int(found) < threats:
        subprocess.run(
            [sys.executable, "-m", "graph.cli", "seed", "--threats", str(threats)],
            check=True,
            env={**os.environ, "DATABASE_URL": POSTGRES, "PYTHONPATH": str(ROOT)},
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60, help="measured, per configuration")
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--readers", type=int, default=16)
    parser.add_argument("--threats", type=int, default=1_000_000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the pair")
    parser.add_argument(
        "--swr-ttl", type=int, default=5, help="max age of every family in the expiring row"
    )
    parser.add_argument("--quick", action="store_true", help="100,000 threats, 10 s, SQLite")
    args = parser.parse_args()
    if args.quick:
        args.threats, args.seconds, args.warmup, args.rounds = 100_000, 10.0, 5.0, 1
    half = args.seconds / args.rounds
    pair = [("quiet", half), ("crawler", half)] * args.rounds
    results: dict[str, Run] = {}
    for engine in args.engines.split(","):
        if engine == "sqlite":
            with sqlite_copy(args.threats) as path:
                results["sqlite"] = run_config({"DATABASE_URL": sqlite_url(path)}, pair, args)
            expiring = {"DATABASE_URL": sqlite_url(ensure_dataset(args.threats))}
            expiring |= {
                f"CACHE_TTL_{f}": str(args.swr_ttl) for f in ("STATS", "THREATS", "CHARTS")
            }
            results[EXPIRING] = run_config(expiring, [("expiring", args.seconds)], args)
        elif engine == "postgresql":
            ensure_postgres(args.threats)
            results["postgresql"] = run_config({"DATABASE_URL": POSTGRES}, pair, args)
        else:
            parser.error(f"unknown engine {engine!r}")
    for name, run in results.items():
        for phase in run.phases:
            print(f"{name}, {phase.line()}")
    print(write_report("live_dashboard", report(results, args, machine())))


if __name__ == "__main__":
    main()
