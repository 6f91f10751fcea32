"""`vajra`: serve the API, seed demo data, export the schema."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

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
        return await db.count()
    finally:
        await db.close()


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

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
        http="httptools",
        log_level=settings.log_level.lower(),
        access_log=args.access_log,
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
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument("--no-demo", action="store_true", help="do not seed an empty database")

    load = commands.add_parser("seed", help="load deterministic demo threats")
    load.add_argument("--threats", type=int, required=True, help="how many threats")
    load.add_argument("--days", type=int, default=90, help="publish dates over the last D days")
    load.add_argument("--seed", type=int, default=1, help="random seed: same seed, same data")

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
    else:
        _export(args)


if __name__ == "__main__":
    main()
