"""Demo data: deterministic, realistic in its mix, and safe to load twice."""

from __future__ import annotations

import collections

from resolvers.records import Severity
from resolvers.seed import generate, seed
from resolvers.store import Database
from tests.conftest import NOW


def test_the_same_seed_generates_the_same_threats() -> None:
    first = list(generate(500, days=30, seed=7, now=NOW))
    assert first == list(generate(500, days=30, seed=7, now=NOW))
    assert first != list(generate(500, days=30, seed=8, now=NOW))


def test_the_mix_is_skewed_like_real_feeds() -> None:
    rows = list(generate(20_000, days=90, seed=1, now=NOW))
    sources = collections.Counter(r[0] for r in rows)
    severities = collections.Counter(Severity.from_rank(r[4]) for r in rows)
    assert sources.most_common(1)[0][0] == "nvd"
    assert sources["cisa-kev"] < sources["nvd"] / 5
    assert severities[Severity.MEDIUM] > severities[Severity.CRITICAL] > 0
    assert severities[Severity.INFO] > 0
    oldest = min(r[9] for r in rows)
    assert (NOW.replace(tzinfo=None) - oldest).days < 90


async def test_seeding_twice_with_the_same_seed_adds_nothing(db: Database) -> None:
    await seed(db, 300, days=10, seed=3, now=NOW)
    assert await db.count() == 300
    await seed(db, 300, days=10, seed=3, now=NOW)
    assert await db.count() == 300
    await seed(db, 100, days=10, seed=4, now=NOW)
    assert await db.count() == 400
