"""Processes that start together on a new SQLite file all start: switching the file to WAL
waits for another process's write instead of failing (two workers of one `vajra serve` on a
fresh file lost one to "database is locked", and uvicorn then stopped the server)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from sqlalchemy import text

from resolvers.store import Database


async def test_a_connection_waits_for_another_process_writing_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    # Another process, not yet in WAL (committed from a timer thread below).
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN IMMEDIATE")  # writing: it holds the file's RESERVED lock
    other.execute("INSERT INTO t VALUES (1)")
    done = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    done.start()
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        assert await db.rows(text("SELECT count(*) FROM t")) == [[(1,)]]
        [[(mode,)]] = await db.rows(text("PRAGMA journal_mode"))
        assert mode == "wal"
    finally:
        done.join()
        other.close()
        await db.close()


async def test_two_databases_opened_at_once_on_a_new_file_both_create_the_schema(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
    first, second = Database(url), Database(url)
    try:
        await asyncio.gather(first.create_schema(), second.create_schema())
        assert await first.count() == await second.count() == 0
    finally:
        await first.close()
        await second.close()
