"""A read whose caller is cancelled (graphql-core cancels a query's other fields when one
fails) runs to its end and gives its connection back: it never costs the pool a connection,
which on PostgreSQL would be a new server process per request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import event, text

from resolvers.store import Database
from tests.conftest import Execute, add, threat_input

SLOW = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000)"
    " SELECT count(*) FROM c",
    "postgresql": "SELECT pg_sleep(0.3)",
}


@pytest.fixture
def invalidated(db: Database) -> Iterator[list[object]]:
    """The connections the pool threw away."""
    seen: list[object] = []
    pool = db.engine.sync_engine.pool

    def listener(*args: object) -> None:
        seen.append(args)

    event.listen(pool, "invalidate", listener)
    yield seen
    event.remove(pool, "invalidate", listener)


async def test_a_read_cancelled_mid_statement_keeps_its_connection(
    db: Database, invalidated: list[object]
) -> None:
    slow = text(SLOW[db.engine.dialect.name])
    for _ in range(3):
        reading = asyncio.ensure_future(db.rows(slow))
        await asyncio.sleep(0.05)  # the statement is running
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
    assert (await db.rows(text("SELECT 1"))) == [[(1,)]]
    pool = db.engine.sync_engine.pool
    for _ in range(300):  # the three statements end meanwhile, and their connections return
        if pool.checkedout() == 0:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.1)
    assert pool.checkedout() == 0  # type: ignore[attr-defined]
    assert invalidated == []


async def test_a_query_with_a_failing_field_costs_the_pool_no_connection(
    db: Database, execute: Execute, invalidated: list[object]
) -> None:
    await add(db, *(threat_input(n) for n in range(1, 30)))
    for page in range(1, 21):
        # trend(days: 0) fails at once; the threats page and stats are being read then.
        result = await execute(
            f"{{ threats(page: {page}, limit: 1) {{ total }} stats {{ totalThreats }}"
            " trend(days: 0) { count } }"
        )
        assert result.data is None
        assert [e.extensions["code"] for e in result.errors] == ["BAD_USER_INPUT"]
    await asyncio.sleep(0.5)
    assert invalidated == []
