"""The threats table, its indexes, and the `Database` handle resolvers run queries on."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateIndex
from sqlalchemy.sql import Executable
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores naive UTC, hands back aware UTC, on every engine."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw SQL on SQLite returns text
            value = dt.datetime.fromisoformat(value)
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC)


metadata = MetaData()

threats = Table(
    "threats",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("source", String(64), nullable=False),
    Column("external_id", String(256), nullable=False),
    Column("title", String(500), nullable=False),
    Column("description", Text),
    Column("severity", SmallInteger, nullable=False),  # Severity.rank: 0 is CRITICAL
    Column("category", String(64), nullable=False),
    Column("tags", JSON, nullable=False),
    Column("indicators", JSON, nullable=False),
    Column("url", String(2048)),
    Column("published_at", UTCDateTime, nullable=False),
    Column("ingested_at", UTCDateTime, nullable=False),
    UniqueConstraint("source", "external_id", name="uq_threats_natural_key"),
)

# The cache's epoch (see cache/epoch.py): one row, changed whenever the cache cannot be told
# precisely what changed (a bulk load, an invalidation that did not reach Redis, an admin's
# `vajra cache invalidate`). Two databases never share one, so neither do their caches.
cache_epoch = Table(
    "cache_epoch",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("epoch", String(32), nullable=False),
)

# Changes the cache has not been told of yet: a row written in the same transaction as the
# change, deleted once its invalidation is done. A row that outlives its writer (a process
# killed between the commit and the invalidation) is found by the sweep, and a new cache
# epoch covers it.
pending_invalidations = Table(
    "pending_invalidations",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# The rollups (see resolvers/rollups.py): threats per (severity, source, category) and per
# UTC hour of publishedAt, kept in step by every write so that no aggregate scans `threats`.
threat_totals = Table(
    "threat_totals",
    metadata,
    Column("severity", SmallInteger, primary_key=True),
    Column("source", String(64), primary_key=True),
    Column("category", String(64), primary_key=True),
    Column("n", BigInteger, nullable=False),
)
threat_hours = Table(
    "threat_hours",
    metadata,
    Column("hour", UTCDateTime, primary_key=True),
    Column("n", BigInteger, nullable=False),
)

# Every list ordering is (published_at DESC, id DESC): each filter column leads an index
# that ends in that order, so a filtered page is an index range read backwards.
INDEXES = [
    Index("ix_threats_published", threats.c.published_at, threats.c.id),
    Index("ix_threats_severity", threats.c.severity, threats.c.published_at, threats.c.id),
    Index("ix_threats_source", threats.c.source, threats.c.published_at, threats.c.id),
    Index("ix_threats_category", threats.c.category, threats.c.published_at, threats.c.id),
    Index("ix_threats_ingested", threats.c.ingested_at),
]

# PostgreSQL answers the substring search from trigram indexes; SQLite scans.
_POSTGRES_SEARCH_INDEXES = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS ix_threats_title_trgm "
    "ON threats USING gin (lower(title) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS ix_threats_description_trgm "
    "ON threats USING gin (lower(description) gin_trgm_ops)",
]


# How long a SQLite writer waits for another process's write transaction before failing.
BUSY_TIMEOUT_MS = 30_000
_BEGIN = "vajra_sqlite_begin"


CLOSE_WAIT = 10.0  # seconds close() waits for reads still running


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # sqlite3's own transaction control BEGINs lazily, before the first INSERT or UPDATE;
    # _sqlite_begin emits BEGIN itself instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    # Readers never wait for the crawler. Switching a new file to WAL needs it to itself, and
    # SQLite refuses at once, without its busy handler, while another process is writing
    # it (two workers starting on a new file): wait for that write as the handler would.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except Exception as exc:  # the driver's OperationalError, adapted or not
            if "database is locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)  # only until a new file is in WAL: once, at a first start
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
    # SQLite's own lower() and LIKE fold ASCII letters only.
    dbapi_connection.create_function("vajra_lower", 1, _lower, deterministic=True)


def _lower(value: str | None) -> str | None:
    return value.lower() if isinstance(value, str) else value


class unicode_lower(FunctionElement[str]):
    """Lower-case letters of every script: PostgreSQL's lower() (under a UTF-8 locale) and,
    on SQLite, Python's str.lower registered as vajra_lower."""

    type = String()
    name = "unicode_lower"
    inherit_cache = True


@compiles(unicode_lower)
def _lower_default(element: unicode_lower, compiler: Any, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(unicode_lower, "sqlite")
def _lower_sqlite(element: unicode_lower, compiler: Any, **kw: Any) -> str:
    return f"vajra_lower({compiler.process(element.clauses, **kw)})"


def _sqlite_begin(conn: Connection) -> None:
    # Reads get a deferred transaction, which in WAL mode never waits for a writer. A deferred
    # transaction that reads and then writes cannot wait for the write lock, though: if another
    # connection committed since its read, SQLite fails it at once with "database is locked".
    # So Database.write() asks for BEGIN IMMEDIATE, which waits up to busy_timeout for the lock.
    mode = conn.get_execution_options().get(_BEGIN, "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _create_indexes(sync_conn: Any) -> None:
    for index in INDEXES:
        index.create(sync_conn, checkfirst=True)


def _drop_indexes(sync_conn: Any) -> None:
    for index in INDEXES:
        index.drop(sync_conn, checkfirst=True)


class Database:
    """An async engine plus the query counter the benchmarks read."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        kwargs: dict[str, Any] = {"echo": echo}
        if not url.startswith("sqlite"):
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self.queries = 0
        self.epochs = CacheEpochs(self)
        # One SQLite write transaction at a time in this process: the others queue here,
        # without a deadline, rather than on the file lock's busy_timeout.
        self._writer = asyncio.Lock() if self.is_sqlite else None
        self._reads: set[asyncio.Future[Any]] = set()  # see rows()
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._count)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_connect)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def _count(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if not statement.startswith("BEGIN"):  # transaction control, like the driver's COMMIT
            self.queries += 1

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; on SQLite, one at a time per process, holding the write lock."""
        if self._writer is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._writer, self.engine.connect() as conn:
            await conn.execution_options(**{_BEGIN: "IMMEDIATE"})
            async with conn.begin():
                yield conn

    async def create_schema(self, *, indexes: bool = True) -> None:
        """Create the tables (and, unless told not to, the indexes) if missing; count the
        rollups of a database that has threats but no rollups yet."""
        # rollups.py builds on the tables defined here, so it is imported here, not above.
        from resolvers import rollups

        async with self.write() as conn:
            await conn.run_sync(metadata.create_all)
            if indexes:
                await self._create_indexes(conn)
            if await rollups.missing(conn):
                # Another process starting beside this one may be counting them already.
                await rollups.lock(conn)
                if await rollups.missing(conn):
                    log.info("rollups: counting the existing threats (once, on this first start)")
                    await rollups.rebuild(conn)
        await self.epochs.read()

    async def recount(self) -> None:
        """Recount the rollups from `threats`: after a write that bypassed ingest."""
        from resolvers import rollups

        async with self.write() as conn:
            await rollups.rebuild(conn)

    async def create_indexes(self, *, in_parallel: bool = False) -> None:
        """Create the indexes if missing; `in_parallel`, on PostgreSQL, builds each on a
        connection of its own at once (after a bulk load: the trigram ones take longest)."""
        if self.is_sqlite or not in_parallel:
            async with self.write() as conn:
                await self._create_indexes(conn)
            return
        extension, *search = _POSTGRES_SEARCH_INDEXES
        async with self.write() as conn:
            await conn.execute(text(extension))

        async def build(statement: Any) -> None:
            async with self.engine.begin() as conn:
                await conn.execute(statement)

        await asyncio.gather(
            *(build(CreateIndex(index, if_not_exists=True)) for index in INDEXES),
            *(build(text(statement)) for statement in search),
        )

    async def _create_indexes(self, conn: Any) -> None:
        await conn.run_sync(_create_indexes)
        if not self.is_sqlite:
            for statement in _POSTGRES_SEARCH_INDEXES:
                await conn.execute(text(statement))

    async def drop_indexes(self) -> None:
        async with self.write() as conn:
            await conn.run_sync(_drop_indexes)
            if not self.is_sqlite:
                for name in ("ix_threats_title_trgm", "ix_threats_description_trgm"):
                    await conn.execute(text(f"DROP INDEX IF EXISTS {name}"))

    async def analyze(self) -> None:
        """Fresh planner statistics, after a bulk load into PostgreSQL."""
        async with self.write() as conn:
            await conn.execute(text("ANALYZE"))

    async def drop_schema(self) -> None:
        async with self.write() as conn:
            await conn.run_sync(metadata.drop_all)

    async def pending(self, conn: AsyncConnection) -> int:
        """Record, in the writer's transaction `conn`, that the cache must still be told."""
        now = dt.datetime.now(dt.UTC)
        statement = pending_invalidations.insert().values(created_at=now)
        return int(
            (await conn.execute(statement.returning(pending_invalidations.c.id))).scalar_one()
        )

    async def settled(self, *pending: int) -> None:
        """The cache has been told (or an epoch covers it): forget these records."""
        if pending:
            async with self.write() as conn:
                await conn.execute(
                    pending_invalidations.delete().where(pending_invalidations.c.id.in_(pending))
                )

    async def orphans(self, older_than: float) -> list[int]:
        """The records older than `older_than` seconds: their writers died before telling
        the cache. Cover them (a new cache epoch), then forget them with `settled`."""
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=older_than)
        query = select(pending_invalidations.c.id).where(
            pending_invalidations.c.created_at <= cutoff
        )
        async with self.engine.connect() as conn:
            return [int(i) for i in (await conn.execute(query)).scalars().all()]

    async def rows(self, *statements: Executable) -> list[Sequence[Any]]:
        """Every row of each statement, in order, on one connection. Run to the end even when
        the caller is cancelled (graphql-core cancels the other fields of a query when one
        fails): a statement cut off mid-flight costs the pool its connection, which
        SQLAlchemy then invalidates (on PostgreSQL, a new server process per request)."""

        async def run() -> list[Sequence[Any]]:
            async with self.engine.connect() as conn:
                return [(await conn.execute(statement)).all() for statement in statements]

        task = asyncio.ensure_future(run())
        self._reads.add(task)
        task.add_done_callback(self._read_done)
        return await asyncio.shield(task)

    def _read_done(self, task: asyncio.Future[Any]) -> None:
        self._reads.discard(task)
        if not task.cancelled():
            task.exception()  # a read nobody waits for any more: not worth a warning

    async def count(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(threats))).scalar_one())

    async def ping(self) -> None:
        """Raise unless the database answers a trivial query."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        """After the reads still running (their callers gone) have ended."""
        if self._reads:
            await asyncio.wait(self._reads, timeout=CLOSE_WAIT)
        await self.engine.dispose()


class CacheEpochs:
    """The cache's epoch in this database: what `cache.epoch.EpochStore` asks for."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def read(self) -> str:
        async with self.db.engine.connect() as conn:
            found = (await conn.execute(select(cache_epoch.c.epoch))).scalar()
        return found if found is not None else await self._create()

    async def bump(self) -> str:
        new = secrets.token_hex(8)
        async with self.db.write() as conn:
            result = await conn.execute(cache_epoch.update().values(epoch=new))
        return new if result.rowcount else await self._create(new)

    async def _create(self, epoch: str | None = None) -> str:
        """The row, made once; whoever loses the race to make it reads the winner's."""
        try:
            async with self.db.write() as conn:
                await conn.execute(
                    cache_epoch.insert().values(id=1, epoch=epoch or secrets.token_hex(8))
                )
        except IntegrityError:
            pass
        async with self.db.engine.connect() as conn:
            return str((await conn.execute(select(cache_epoch.c.epoch))).scalar_one())
