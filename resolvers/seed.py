"""Deterministic, realistic demo threats, bulk-loaded fast.

The mix follows public feeds: NVD and GitHub advisories dominate, CISA KEV is small but
mostly critical, URLhaus and OTX bring malware and phishing indicators.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.engine import make_url

from resolvers.records import Severity
from resolvers.store import BUSY_TIMEOUT_MS, Database


@dataclass(frozen=True)
class _Feed:
    name: str
    weight: float
    categories: tuple[str, ...]
    severities: tuple[float, ...]  # CRITICAL, HIGH, MEDIUM, LOW, INFO


FEEDS = (
    _Feed("nvd", 38, ("vulnerability",), (10, 32, 42, 12, 4)),
    _Feed("github-advisory", 18, ("vulnerability",), (8, 30, 45, 15, 2)),
    _Feed("otx", 14, ("malware", "phishing", "botnet", "apt", "scanner"), (4, 22, 40, 22, 12)),
    _Feed("urlhaus", 12, ("malware",), (3, 35, 45, 12, 5)),
    _Feed("phishtank", 7, ("phishing",), (1, 20, 50, 20, 9)),
    _Feed("malwarebazaar", 6, ("malware", "ransomware"), (12, 40, 35, 10, 3)),
    _Feed("cisa-kev", 3, ("exploited-vulnerability",), (55, 40, 5, 0, 0)),
    _Feed("abuseipdb", 2, ("scanner", "bruteforce", "botnet"), (0, 10, 40, 30, 20)),
)
_PRODUCTS = (
    "OpenSSL",
    "Apache HTTP Server",
    "nginx",
    "Linux kernel",
    "Chromium",
    "Exchange Server",
    "FortiOS",
    "Ivanti Connect Secure",
    "Confluence",
    "Jenkins",
    "GitLab",
    "WordPress",
    "log4j",
    "Spring Framework",
    "PHP",
    "Node.js",
    "Kubernetes",
    "OpenSSH",
    "Citrix ADC",
    "Cisco IOS XE",
    "PAN-OS",
    "MOVEit Transfer",
    "Jira",
    "Drupal",
    "Tomcat",
    "Redis",
)
_FLAWS = (
    "remote code execution",
    "SQL injection",
    "cross-site scripting",
    "path traversal",
    "authentication bypass",
    "privilege escalation",
    "heap buffer overflow",
    "server-side request forgery",
    "denial of service",
    "deserialization of untrusted data",
    "use-after-free",
    "information disclosure",
)
_FAMILIES = (
    "Emotet",
    "QakBot",
    "AgentTesla",
    "LockBit",
    "Mirai",
    "RedLine",
    "AsyncRAT",
    "IcedID",
    "Cobalt Strike",
    "BlackCat",
    "Formbook",
    "Remcos",
    "SocGholish",
    "Raccoon",
    "DarkGate",
)
_BRANDS = ("Microsoft 365", "PayPal", "DHL", "Netflix", "Chase", "Apple ID", "DocuSign", "Steam")
_TLDS = ("com", "net", "xyz", "top", "ru", "info", "online", "site", "cn", "io")
_TAGS = (
    "rce",
    "exploited",
    "ransomware",
    "botnet",
    "phishing",
    "c2",
    "initial-access",
    "webshell",
    "credential-theft",
    "supply-chain",
    "zero-day",
    "loader",
    "stealer",
    "patch-available",
)
_SEVERITIES = tuple(Severity)
_COLUMNS = (
    "source",
    "external_id",
    "title",
    "description",
    "severity",
    "category",
    "tags",
    "indicators",
    "url",
    "published_at",
    "ingested_at",
)


def _domain(rng: random.Random) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return "".join(rng.choices(letters, k=rng.randint(6, 12))) + "." + rng.choice(_TLDS)


def _ip(rng: random.Random) -> str:
    return (
        f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    )


def _content(
    rng: random.Random, feed: _Feed, category: str, n: int, year: int
) -> tuple[str, str, str, list[dict[str, str]], str]:
    """(external_id, title, description, indicators, url) for one threat."""
    if category in ("vulnerability", "exploited-vulnerability"):
        cve = f"CVE-{year}-{1000 + n}"
        product, flaw = rng.choice(_PRODUCTS), rng.choice(_FLAWS)
        external = cve if feed.name != "github-advisory" else f"GHSA-{n:04x}-{n * 7 % 65536:04x}"
        title = f"{product} {flaw} ({cve})"
        description = (
            f"A {flaw} vulnerability in {product} allows a remote attacker to compromise "
            f"affected systems. Versions before the {year} security update are affected."
        )
        return (
            external,
            title,
            description,
            [{"kind": "CVE", "value": cve}],
            f"https://nvd.example/{cve}",
        )
    if category == "phishing":
        domain = f"{rng.choice(_BRANDS).lower().replace(' ', '-')}-login.{_domain(rng)}"
        title = f"Phishing page imitating {rng.choice(_BRANDS)} at {domain}"
        description = f"Credential-harvesting page hosted on {domain}, reported by {feed.name}."
        indicators = [
            {"kind": "DOMAIN", "value": domain},
            {"kind": "URL", "value": f"https://{domain}/signin"},
        ]
        return f"{feed.name}-{n}", title, description, indicators, f"https://{domain}/signin"
    family = rng.choice(_FAMILIES)
    ip, digest = _ip(rng), rng.getrandbits(256).to_bytes(32, "big").hex()
    title = f"{family} {category} infrastructure at {ip}"
    description = f"{family} {category} activity observed; sample sha256 {digest[:16]}..."
    indicators = [{"kind": "IP", "value": ip}, {"kind": "HASH", "value": digest}]
    if rng.random() < 0.5:
        indicators.append({"kind": "URL", "value": f"http://{ip}/{rng.getrandbits(32):08x}.bin"})
    return f"{feed.name}-{n}", title, description, indicators, f"https://{feed.name}.example/{n}"


def generate(count: int, *, days: int, seed: int, now: dt.datetime) -> Iterator[tuple[Any, ...]]:
    """Rows in `_COLUMNS` order, ready for a driver: JSON as text, times as naive UTC."""
    rng = random.Random(seed)
    span = days * 86_400
    weights = [f.weight for f in FEEDS]
    ingested = now.astimezone(dt.UTC).replace(tzinfo=None)
    counters = dict.fromkeys((f.name for f in FEEDS), 0)
    for feed in rng.choices(FEEDS, weights=weights, k=count):
        n = counters[feed.name] = counters[feed.name] + 1
        category = feed.categories[0] if len(feed.categories) == 1 else rng.choice(feed.categories)
        severity = rng.choices(_SEVERITIES, weights=feed.severities)[0]
        # Feeds publish more recently than long ago: a mild skew toward today.
        published = ingested - dt.timedelta(seconds=int(span * rng.random() ** 1.3))
        external, title, description, indicators, url = _content(
            rng, feed, category, n + (seed - 1) * 1_000_000, published.year
        )
        tags = rng.sample(_TAGS, k=rng.randint(0, 3))
        yield (
            feed.name,
            external,
            title,
            description,
            severity.rank,
            category,
            orjson.dumps(tags).decode(),
            orjson.dumps(indicators).decode(),
            url,
            published,
            ingested,
        )


Progress = Callable[[int, int], None]


def progress_bar(total: int) -> Progress:
    """A one-line bar on stderr."""
    started = time.perf_counter()

    def show(done: int, _total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        elapsed = time.perf_counter() - started
        bar = "#" * filled + "." * (width - filled)
        sys.stderr.write(f"\r[{bar}] {done:,}/{total:,} threats  {elapsed:5.1f}s")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


async def seed(
    db: Database,
    count: int,
    *,
    days: int = 90,
    seed: int = 1,
    now: dt.datetime | None = None,
    progress: Progress | None = None,
    batch: int = 20_000,
) -> None:
    """Load `count` demo threats; re-running with the same seed adds nothing twice."""
    now = now or dt.datetime.now(dt.UTC)
    rows = generate(count, days=days, seed=seed, now=now)
    report = progress or (lambda done, total: None)
    if db.is_sqlite:
        await db.create_schema(indexes=False)
        empty = await db.count() == 0
        if empty:  # building indexes once at the end is several times faster
            await db.drop_indexes()
        path = make_url(db.url).database or ":memory:"
        await asyncio.to_thread(_load_sqlite, path, rows, count, batch, report)
        await db.create_indexes()
        # The loaders bypass ingest, so the rollups are recounted once, from what is now there.
        await db.recount()
    else:
        await db.create_schema(indexes=False)
        await _load_postgres(db, rows, count, batch, report)
        # The recount reads the whole table anyway: it needs none of the indexes being built.
        await asyncio.gather(db.create_indexes(in_parallel=True), db.recount())
        await db.analyze()  # the planner's statistics would otherwise describe an empty table


def _load_sqlite(
    path: str, rows: Iterator[tuple[Any, ...]], count: int, batch: int, report: Progress
) -> None:
    # A live server may be writing: wait for its transaction as the server's own writers do.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        placeholders = ", ".join("?" for _ in _COLUMNS)
        sql = f"INSERT OR IGNORE INTO threats ({', '.join(_COLUMNS)}) VALUES ({placeholders})"
        done = 0
        while done < count:
            chunk = [_sqlite_row(r) for r in itertools.islice(rows, batch)]
            if not chunk:
                break
            conn.executemany(sql, chunk)
            conn.commit()
            done += len(chunk)
            report(done, count)
    finally:
        conn.close()


def _sqlite_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # SQLAlchemy's SQLite DateTime format, so both paths read the same text.
    *head, published, ingested = row
    return (
        *head,
        published.isoformat(" ", "microseconds"),
        ingested.isoformat(" ", "microseconds"),
    )


async def _load_postgres(
    db: Database, rows: Iterator[tuple[Any, ...]], count: int, batch: int, report: Progress
) -> None:
    """COPY, the fastest way in: straight into an empty table (its indexes dropped, to be
    built once afterwards), else through a staging table so that known threats are skipped."""
    empty = await db.count() == 0
    if empty:
        await db.drop_indexes()
    columns = list(_COLUMNS)
    names = ", ".join(columns)
    async with db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        pg = raw.driver_connection  # asyncpg's own connection: SQLAlchemy has no COPY
        assert pg is not None
        done = 0
        while done < count:
            chunk = list(itertools.islice(rows, batch))
            if not chunk:
                break
            async with pg.transaction():
                if empty:
                    await pg.copy_records_to_table("threats", records=chunk, columns=columns)
                else:
                    await pg.execute(
                        "CREATE TEMP TABLE seed_staging ON COMMIT DROP AS "
                        f"SELECT {names} FROM threats WITH NO DATA"
                    )
                    await pg.copy_records_to_table("seed_staging", records=chunk, columns=columns)
                    await pg.execute(
                        f"INSERT INTO threats ({names}) SELECT {names} FROM seed_staging "
                        "ON CONFLICT (source, external_id) DO NOTHING"
                    )
            done += len(chunk)
            report(done, count)
