"""`vajra`: serve the API, seed demo data, crawl a feed, invalidate the cache, export the schema."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

from crawler.command import EXIT_CODES
from crawler.command import add_arguments as add_crawl_arguments
from crawler.command import run as crawl_command
from graph.settings import get_settings
from resolvers.seed import progress_bar, seed
from resolvers.store import Database


async def _seed(count: int, days: int, seed_value: int, *, only_if_empty: bool = False) -> int:
    db = Database(get_settings().database_url)
    try:
        await db.create_schema()
        if only_if_empty and await db.count() > 0:
            return 0
        await seed(db, count, days=days, seed=seed_value, progress=progress_bar(count))
        # Written behind the cache's back: everything cached of this database is stale.
        await _invalidate(db, [])
        return await db.count()
    finally:
        await db.close()


async def _invalidate(db: Database, tags: list[str]) -> str:
    """Tags get new generations (or, without tags, the database a new cache epoch), and
    every process is told; a process that does not hear it sees it within the poll period."""
    from graph.app import build_cache

    settings = get_settings()
    await db.create_schema()
    if not tags:
        # A change made behind the API's back (plain SQL) did not move the rollups either.
        await db.recount()
    cache = build_cache(settings, db)
    if cache is None:
        await db.epochs.bump()
        return "new cache epoch recorded (the cache is disabled here)"
    try:
        await cache.epoch()
        if tags:
            await cache.invalidate(tags)
            done = f"invalidated {len(tags)} tag(s)"
        else:
            await cache.reset()
            done = "new cache epoch: everything cached before it is stale"
    finally:
        await cache.close()
    if cache.stats.lost_invalidations:
        done += "; Redis refused it: a new cache epoch covers it"
    told = "not announced (Redis unreachable)" if cache.trust.unannounced else "announced"
    return f"{done}; {told}; every server sees it within {settings.cache_epoch_poll_ms} ms"


async def _cache_command(args: argparse.Namespace) -> str:
    db = Database(get_settings().database_url)
    try:
        return await _invalidate(db, args.tag or [])
    finally:
        await db.close()


def _metrics_dir(configured: str | None) -> tuple[str, bool]:
    """Where every worker writes its metrics, emptied (prometheus-client wants it fresh at
    each start); True when it is a temporary directory of our own, removed on the way out."""
    if configured is None:
        return tempfile.mkdtemp(prefix="vajra-metrics-"), True
    directory = Path(configured)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    return str(directory), False


def _serve(args: argparse.Namespace) -> None:
    # Before anything imports prometheus-client, in this process and in the workers it
    # starts (they inherit the environment): its multiprocess mode is chosen at import.
    directory, temporary = _metrics_dir(get_settings().prometheus_multiproc_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    if args.access_log:
        os.environ["VAJRA_ACCESS_LOG"] = "true"
    get_settings.cache_clear()
    try:
        _run(args)
    finally:
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)


def _run(args: argparse.Namespace) -> None:
    import uvicorn

    from graph.protocol import ApiHttpToolsProtocol

    settings = get_settings()
    if settings.demo_threats and not args.no_demo:
        loaded = asyncio.run(_seed(settings.demo_threats, 90, 1, only_if_empty=True))
        if loaded:
            print(f"empty database: loaded {loaded:,} demo threats", file=sys.stderr)
    uvicorn.run(
        "graph.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http=ApiHttpToolsProtocol,
        ws="none",  # no WebSocket routes: an upgrade is answered as plain HTTP
        limit_concurrency=settings.max_connections,  # 503 past it (graph/protocol.py)
        log_level=settings.log_level.lower(),
        access_log=False,  # ours (VAJRA_ACCESS_LOG) names the operation and the cache status
    )


def _export(args: argparse.Namespace) -> None:
    from graph.schema import export_sdl

    sdl = export_sdl()
    if args.path == "-":
        sys.stdout.write(sdl)
    else:
        Path(args.path).write_text(sdl, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vajra", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log one line per request: operation, status, cache status, duration "
        "(VAJRA_ACCESS_LOG=true does the same)",
    )
    serve.add_argument("--no-demo", action="store_true", help="do not seed an empty database")

    load = commands.add_parser("seed", help="load deterministic demo threats")
    load.add_argument("--threats", type=int, required=True, help="how many threats")
    load.add_argument("--days", type=int, default=90, help="publish dates over the last D days")
    load.add_argument("--seed", type=int, default=1, help="random seed: same seed, same data")

    crawl = commands.add_parser(
        "crawl",
        help="send a CISA KEV, NVD or STIX 2.1 feed to the API",
        description="Map a feed onto threats and send them through ingestThreats, 1,000 at a time.",
        epilog=EXIT_CODES,
    )
    add_crawl_arguments(crawl)

    cache = commands.add_parser("cache", help="administer the cache")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True)
    invalidate = cache_commands.add_parser(
        "invalidate",
        help="make cached answers stale in every server: all of them, or those of some tags",
        description="Run after writing to the database by hand, restoring it or migrating it. "
        "Without --tag the database gets a new cache epoch: nothing cached before is served.",
    )
    invalidate.add_argument(
        "--tag", action="append", help="a tag to invalidate, e.g. threat:source=nvd (repeatable)"
    )

    export = commands.add_parser("export-schema", help="write the SDL (default: schema.graphql)")
    export.add_argument("path", nargs="?", default="schema.graphql")

    args = parser.parse_args(argv)
    if args.command == "serve":
        _serve(args)
    elif args.command == "seed":
        if args.threats < 1 or args.days < 1:
            parser.error("--threats and --days must be at least 1")
        total = asyncio.run(_seed(args.threats, args.days, args.seed))
        print(f"the database now holds {total:,} threats", file=sys.stderr)
    elif args.command == "crawl":
        sys.exit(crawl_command(args))
    elif args.command == "cache":
        print(asyncio.run(_cache_command(args)), file=sys.stderr)
    else:
        _export(args)


if __name__ == "__main__":
    main()
