"""REDIS_URL forms: one node, Sentinel and Cluster."""

from __future__ import annotations

import pytest

from cache.backends import (
    ClusterBackend,
    ClusterUrl,
    RedisBackend,
    SentinelBackend,
    SentinelUrl,
    SingleUrl,
    backend_for,
    parse_redis_url,
)
from graph.app import build_cache
from graph.settings import Settings
from resolvers.store import Database


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "redis://:secret@10.0.0.1:6380/2",
        "rediss://user:secret@cache.example:6380",
        "unix:///run/redis.sock?db=1",
        "REDIS://localhost",
    ],
)
def test_one_node_urls_are_handed_on_unchanged(url: str) -> None:
    assert parse_redis_url(url) == SingleUrl(url)


def test_a_sentinel_url_names_the_sentinels_and_the_service() -> None:
    parsed = parse_redis_url("redis+sentinel://10.0.0.1:26379,10.0.0.2:26380,sentinel-c/vajra")
    assert parsed == SentinelUrl(
        sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26380), ("sentinel-c", 26379)),
        service="vajra",
    )


def test_the_master_credentials_come_before_the_at_sign_or_in_the_query() -> None:
    before = parse_redis_url("redis+sentinel://app:p%40ss@127.0.0.1:26390/vajra?db=3")
    query = parse_redis_url(
        "redis+sentinel://127.0.0.1:26390/vajra?db=3&username=app&password=p%40ss"
    )
    assert before == query
    assert isinstance(before, SentinelUrl)
    assert (before.username, before.password, before.db) == ("app", "p@ss", 3)
    assert (before.sentinel_username, before.sentinel_password) == (None, None)


def test_the_sentinels_password_is_a_query_parameter_of_its_own() -> None:
    parsed = parse_redis_url(
        "redis+sentinel://:master@[::1]:26390,[::1]/vajra?sentinel_password=watch"
    )
    assert isinstance(parsed, SentinelUrl)
    assert parsed.sentinels == (("::1", 26390), ("::1", 26379))
    assert (parsed.password, parsed.sentinel_password) == ("master", "watch")


def test_passwords_stay_out_of_reprs() -> None:
    parsed = parse_redis_url("redis+sentinel://:master@h:1/vajra?sentinel_password=watch")
    assert "master" not in repr(parsed)
    assert "watch" not in repr(parsed)


def test_a_cluster_url_names_its_seed_nodes() -> None:
    assert parse_redis_url("redis+cluster://10.0.0.1:7000,10.0.0.2,[::1]:7002") == ClusterUrl(
        nodes=(("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    )
    tls = parse_redis_url("rediss+cluster://app:p%40ss@cache.example:7000/")
    assert tls == ClusterUrl((("cache.example", 7000),), True, "app", "p@ss")
    assert "p@ss" not in repr(tls)


def test_the_server_builds_a_cluster_cache_from_the_url(sqlite_db: Database) -> None:
    settings = Settings(REDIS_URL="redis+cluster://127.0.0.1:7000", DATABASE_URL=sqlite_db.url)
    assert isinstance(build_cache(settings, sqlite_db).backend, ClusterBackend)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:6379", "no scheme"),
        ("localhost", "no scheme"),
        ("memcached://localhost:11211", "unknown Redis URL scheme"),
        ("rediss+sentinel://h:26379/vajra", "not supported yet"),
        ("redis+sentinel://h:26379", "one service name"),
        ("redis+sentinel://h:26379/", "one service name"),
        ("redis+sentinel://h:26379/vajra/0", "one service name"),
        ("redis+sentinel://h:26379,/vajra", "has no host"),
        ("redis+sentinel://h:port/vajra", "bad port"),
        ("redis+sentinel://h:70000/vajra", "bad port"),
        ("redis+sentinel://[::1/vajra", "bad address"),
        ("redis+cluster://h:7000/0", "only seed nodes"),
        ("redis+cluster://h:7000?timeout=1", "only seed nodes"),
        ("redis+cluster://h:7000,", "has no host"),
        ("redis+sentinel://h/vajra?db=x", "db must be a number"),
        ("redis+sentinel://h/vajra?db=-1", "db must be a number"),
        ("redis+sentinel://h/vajra?timeout=1", r"unknown redis\+sentinel:// option 'timeout'"),
        ("redis+sentinel://h/vajra?db=1&db=2", "more than once"),
        ("redis+sentinel://:a@h/vajra?password=b", "both before '@' and in the query"),
        ("redis+sentinel://h/vajra#x", "no #fragment"),
    ],
)
def test_a_bad_url_is_a_clear_value_error(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_redis_url(url)


def test_an_error_message_never_shows_a_password() -> None:
    with pytest.raises(ValueError, match="no scheme") as caught:
        parse_redis_url("user:hunter2@localhost")
    assert "hunter2" not in str(caught.value)


async def test_the_factory_picks_the_backend_the_url_names() -> None:
    single = backend_for("redis://127.0.0.1:1/0", timeout=0.05)
    sentinel = backend_for("redis+sentinel://127.0.0.1:1/vajra", timeout=0.05)
    cluster = backend_for("redis+cluster://127.0.0.1:1", timeout=0.05)
    try:
        assert type(single) is RedisBackend
        assert isinstance(sentinel, SentinelBackend)
        assert isinstance(cluster, ClusterBackend)
        assert await cluster.describe() == {
            "redis_topology": "cluster",
            "redis_nodes": 0,
            "redis_replicas": 0,
        }
        assert await single.describe() == {"redis_topology": "single"}
        # Nothing listens there: the master is unknown, and saying so is not an error.
        assert await sentinel.describe() == {
            "redis_topology": "sentinel",
            "redis_service": "vajra",
            "redis_master": None,
        }
    finally:
        await single.close()
        await sentinel.close()
        await cluster.close()
