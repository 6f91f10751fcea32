"""The forms a Redis URL may take, parsed once, before anything connects.

- `redis://[[user]:password@]host[:port][/db]`, `rediss://` (TLS), `unix://`: one node,
  handed to redis-py as it is.
- `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[?db=N&...]`: the
  master that the Sentinels at those addresses name for `service` (port 26379 by default).
  The user and password before `@` (or `username=` / `password=` in the query) are the
  *master's*, as in a `redis://` URL; `sentinel_username=` / `sentinel_password=` are the
  *Sentinels'* own (they have none unless the Sentinels were given `requirepass`).
- `redis+cluster://[[user]:password@]host[:port][,host[:port]...][/]`: a Redis Cluster,
  found through any of those seed nodes (port 6379 by default); `rediss+cluster://` for TLS.
  A cluster has one database: no `/db`, no query options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

SENTINEL_PORT = 26379
REDIS_PORT = 6379
_SENTINEL_OPTIONS = ("db", "username", "password", "sentinel_username", "sentinel_password")


@dataclass(frozen=True, slots=True)
class SingleUrl:
    """One Redis node; `url` is handed to redis-py unchanged."""

    url: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """The master of `service`, as the Sentinels at `sentinels` name it."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    """A Redis Cluster, found through any of the seed `nodes`."""

    nodes: tuple[tuple[str, int], ...]
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_redis_url(url: str) -> SingleUrl | SentinelUrl | ClusterUrl:
    """The topology `url` names; ValueError, saying what is wrong, for anything else."""
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(f"not a Redis URL (no scheme): {_redact(url)!r}")
    if scheme in ("redis", "rediss", "unix"):
        return SingleUrl(url)
    if scheme in ("redis+cluster", "rediss+cluster"):
        return _cluster(url, tls=scheme == "rediss+cluster")
    if scheme == "redis+sentinel":
        return _sentinel(url)
    if scheme == "rediss+sentinel":
        raise ValueError("rediss+sentinel:// (TLS to Sentinel) is not supported yet")
    raise ValueError(
        f"unknown Redis URL scheme {scheme!r}: expected redis://, rediss://, unix://, "
        "redis+sentinel://, redis+cluster:// or rediss+cluster://"
    )


@dataclass(frozen=True, slots=True)
class _Parts:
    username: str
    password: str | None  # None: no ':' in the userinfo
    hosts: tuple[tuple[str, int], ...]
    path: str
    query: str


def _split(url: str, default_port: int) -> _Parts:
    """A URL with several `host:port`s: by hand, as urllib takes such a netloc for a
    malformed one."""
    scheme, _, rest = url.partition("://")
    rest, hash_, _ = rest.partition("#")
    if hash_:
        raise ValueError(f"a {scheme}:// URL takes no #fragment")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        userinfo = ""
    username, colon, password = userinfo.partition(":")
    return _Parts(
        unquote(username),
        unquote(password) if colon else None,
        tuple(_address(item, default_port) for item in hosts.split(",")),
        path,
        query,
    )


def _cluster(url: str, *, tls: bool) -> ClusterUrl:
    parts = _split(url, REDIS_PORT)
    if parts.path or parts.query:
        raise ValueError(
            "a redis+cluster:// URL is only seed nodes, as in "
            "redis+cluster://127.0.0.1:7000,127.0.0.1:7001 (a cluster has no /db, no options)"
        )
    return ClusterUrl(parts.hosts, tls, parts.username or None, parts.password or None)


def _sentinel(url: str) -> SentinelUrl:
    parts = _split(url, SENTINEL_PORT)
    username, password, sentinels, query = parts.username, parts.password, parts.hosts, parts.query
    colon = password is not None
    service = unquote(parts.path)
    if not service or "/" in service:
        raise ValueError(
            "redis+sentinel:// needs exactly one service name as its path, as in "
            "redis+sentinel://127.0.0.1:26379/mymaster"
        )
    options: dict[str, str] = {}
    for name, values in parse_qs(query, keep_blank_values=True).items():
        if name not in _SENTINEL_OPTIONS:
            raise ValueError(
                f"unknown redis+sentinel:// option {name!r}; known: {', '.join(_SENTINEL_OPTIONS)}"
            )
        if len(values) > 1:
            raise ValueError(f"redis+sentinel:// option {name!r} is given more than once")
        options[name] = values[0]
    if (username and "username" in options) or (colon and "password" in options):
        raise ValueError("the master's credentials are given both before '@' and in the query")
    db_text = options.get("db", "0")
    if not db_text.isdigit():
        raise ValueError(f"redis+sentinel:// option db must be a number >= 0, not {db_text!r}")
    return SentinelUrl(
        sentinels=sentinels,
        service=service,
        db=int(db_text),
        username=username or options.get("username") or None,
        password=password or options.get("password") or None,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
    )


def _address(item: str, default_port: int) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]` or `[v6]:port`."""
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"bad address {item!r}")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ValueError(f"an address has no host: {item!r}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in address {item!r}")
    return host, int(port_text)


def _redact(url: str) -> str:
    """`url` with any password replaced, fit for an error message."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, sep, userinfo = head.partition("://")
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{tail}" if sep else f"***@{tail}"
