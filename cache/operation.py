"""The whole-operation cache: a response served at the ASGI layer, before routing, parsing,
validation and execution, when every field of the operation is cacheable.

An entry is the response body with the tags and generations its fields were read under,
checked against Redis on every L2 hit (one MGET) and trusted in the local tier while this
process hears every invalidation. HTTP gets the composed policy: Cache-Control, Age, ETag,
and 304 for a matching If-None-Match.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import socket
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from typing import Any

import orjson

from cache.exceptions import BackendError
from cache.extension import OperationRecord
from cache.http import buffer, directives, etag_of, header, raw_accept, respond
from cache.keying import KEYED_BYTES, Memo, operation_key
from cache.layer import Cache
from cache.local import LocalEntry
from cache.replay import Replays, Run

logger = logging.getLogger("vajra.cache")

ASGIApp = Callable[..., Any]
OPERATION = "(operation)"  # the coordinate whole-operation hits and misses are counted under
# Scope keys shared with the layers around: the app sets NAME (the operation's name, "" for
# an anonymous one) once the document validated; this cache sets STATUS to what it answered
# (HIT, COALESCED, MISS) and NAME on the answers it gives without the app.
NAME = "graphql.operation"
STATUS = "cache.status"
# Which process answered, when asked for: the cross-process benchmark tells workers apart.
NODE = (b"x-cache-node", f"{socket.gethostname()}-{os.getpid()}".encode())
_JSON_TYPES = (b"application/json", b"application/graphql-response+json")


class OperationCache:
    """ASGI middleware for one GraphQL path. `cache()` gives the process's Cache (or None).

    `debug(scope)` says whether a request's X-Cache-Debug header is honoured: such a request
    is answered field by field, never from an entry and never stored. `node` adds
    x-cache-node (host and process id) to every answer.

    `vary(scope)` names what the app's answer depends on beyond the GraphQL request (its
    content negotiation), from the method, query string and Accept header alone: part of the
    key, and None for a request never answered from an entry. Sent as the Accept header, a
    variant must negotiate itself: a replay is sent with it rather than with the header as
    sent. The default, the Accept header as sent, is never wrong, only less shared."""

    def __init__(
        self,
        app: ASGIApp,
        cache: Callable[[], Cache | None],
        *,
        path: str = "/graphql",
        identity: Callable[[MutableMapping[str, Any]], str | None] = lambda scope: None,
        vary: Callable[[MutableMapping[str, Any]], str | None] = raw_accept,
        debug: Callable[[MutableMapping[str, Any]], bool] = lambda scope: False,
        node: bool = False,
        max_known: int = 10_000,
        refresh: int = 256,
    ) -> None:
        self.app = app
        self.cache = cache
        self.path = path
        self.identity = identity
        self.vary = vary
        self.debug = debug
        self._extra = [NODE] if node else []
        # op key -> the tags its entry depends on, so an L2 hit is one MGET; and op keys
        # whose policy is PRIVATE, which are keyed per caller.
        self._tags: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._private: set[str] = set()
        self._keys = Memo(max_known)
        self._names: dict[str, str] = {}  # op key -> its operation's name, as long as its tags
        self.max_known = max_known
        # The hottest public operations, replayed after the writes that make them stale.
        self.replays = Replays(capacity=refresh, variant=vary)
        self._following: Cache | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        cache = self.cache() if scope["type"] == "http" and scope["path"] == self.path else None
        if (
            cache is None
            or not cache.enabled
            or scope["method"] not in ("GET", "POST")
            or (header(scope, b"x-cache-debug") is not None and self.debug(scope))
        ):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST":  # a GET's hits pay no header scan for this
            declared = header(scope, b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > KEYED_BYTES:
                await self._miss(cache, None, scope, receive, send)  # not read here at all
                return
        body, receive = await buffer(receive)
        if len(body) + len(scope.get("query_string", b"")) > KEYED_BYTES:
            await self._miss(cache, None, scope, receive, send)
            return
        key = self._keys.key(scope, body, lambda: self._key(scope, body))
        if key is None:
            await self._miss(cache, None, scope, receive, send)
            return
        public = key not in self._private
        if not public:
            caller = self.identity(scope)
            if caller is None:
                await self._miss(cache, None, scope, receive, send)
                return
            key += ":" + hashlib.sha256(caller.encode()).hexdigest()[:16]
        self._follow(cache)
        entry = cache.local.get(key)
        if entry is None:
            entry = await self._remote(cache, key)
        if entry is not None:
            if public:
                self.replays.seen(key, scope, body, entry.tags)
            cache.stats.record(OPERATION, "HIT")
            scope[STATUS] = "HIT"
            scope[NAME] = self._names.get(key)
            await respond(scope, send, entry, cache.clock(), "HIT", self._extra)
            return
        if public:
            stale = cache.local.stale(key)
            if stale is not None and self.replays.revalidate(key, self._runner(cache)):
                # Past its max age, not invalidated: served while one replay recomputes it.
                cache.stats.record(OPERATION, "STALE")
                scope[STATUS] = "STALE"
                scope[NAME] = self._names.get(key)
                await respond(scope, send, stale, cache.clock(), "STALE", self._extra)
                return
        flight = self.replays.flight(key)
        if flight is not None:
            # Being replayed after a write: its answer, rather than a second run.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(flight), self.replays.wait)
            entry = cache.local.get(key) or await self._remote(cache, key)
            if entry is not None:
                cache.stats.record(OPERATION, "COALESCED")
                scope[STATUS] = "COALESCED"
                scope[NAME] = self._names.get(key)
                await respond(scope, send, entry, cache.clock(), "COALESCED", self._extra)
                return
        # Counted once the answer shows whether it was cacheable: a MISS if it was (and
        # stored), else a BYPASS (a mutation, an error), which hit rates leave out.
        await self._miss(cache, key, scope, receive, send, counted=True)
        tags = self._tags.get(key)
        if tags is not None and key not in self._private:  # stored: worth replaying
            self.replays.seen(key, scope, body, tags)

    def _follow(self, cache: Cache) -> None:
        """Replay hot operations in `cache`'s refresh rounds, after its field entries."""
        if self._following is not cache:
            self._following = cache
            self.replays.counts = cache.refresher.counts

            async def refresh(tags: set[str]) -> None:
                await self.replays.refresh(tags, self._runner(cache))

            cache.refresher.follow(refresh)

    def _runner(self, cache: Cache) -> Run:
        return functools.partial(self._replay, cache)

    async def _replay(self, cache: Cache, key: str, scope: dict[str, Any], body: bytes) -> None:
        """Operation `key` answered again through the app, and stored, as any miss is."""
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        async def discard(message: dict[str, Any]) -> None:
            return None

        scope.pop(NAME, None)
        await self._miss(cache, key, scope, receive, discard)

    def _key(self, scope: MutableMapping[str, Any], body: bytes) -> str | None:
        """The operation's key (see cache/keying.py), or None: the app answers it."""
        variant = self.vary(scope)
        return None if variant is None else operation_key(scope, body, variant)

    async def _remote(self, cache: Cache, key: str) -> LocalEntry | None:
        epoch = await cache.epoch()
        backend = cache.trust.reader()
        if backend is None or epoch is None:
            return None
        entry_key = cache.keys.operation(key, epoch)
        tags = self._tags.get(key)
        # Read before the round trip: an invalidation heard while it is in flight may make
        # what it returns stale, and then it must not go into the local tier.
        local_epoch = cache.local_epoch
        try:
            if tags is None:
                raw = (await backend.get_many([entry_key]))[0]
                if raw is None:
                    return None
                stored = orjson.loads(raw)
                tags = tuple(stored["tags"])
                current = await backend.get_many([cache.keys.generation(t) for t in tags])
                # The next L2 hit here is one MGET.
                self._remember_tags(key, tags, stored.get("n"))
            else:
                raw, *current = await backend.get_many(
                    [entry_key, *(cache.keys.generation(t) for t in tags)]
                )
                if raw is None:
                    return None
                stored = orjson.loads(raw)
        except (BackendError, orjson.JSONDecodeError, KeyError, TypeError):
            return None
        if await cache.epoch() != epoch:
            return None  # the epoch changed while we read: what we read may predate it
        if (
            tuple(stored["tags"]) != tags
            or [g.decode() if g else None for g in current] != stored["g"]
        ):
            return None
        if stored["t"] + stored["a"] <= cache.clock():
            return None  # past its max age (Redis's TTL, on its own clock, may lag)
        value = stored["b"].encode()
        entry = LocalEntry(
            value=value,
            etag=etag_of(value, stored["m"]),
            tags=tags,
            created=stored["t"],
            expires=stored["t"] + stored["a"],
            meta=(stored["m"], directives(stored["p"], stored.get("s", 0))),
            window=stored.get("s", 0),
        )
        if cache.local_epoch == local_epoch:
            cache.local.put(key, entry)
        return entry

    async def _miss(
        self,
        cache: Cache,
        key: str | None,
        scope: MutableMapping[str, Any],
        receive: Any,
        send: Any,
        *,
        counted: bool = False,
    ) -> None:
        record = OperationRecord()
        scope["cache.operation"] = record
        record.epoch = cache.trust.current()
        epoch = cache.local_epoch
        started: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    await self._finish(
                        cache, key, scope, send, started, b"".join(chunks), record, epoch, counted
                    )
            else:
                await send(message)

        await self.app(scope, receive, capture)

    async def _finish(
        self,
        cache: Cache,
        key: str | None,
        scope: MutableMapping[str, Any],
        send: Any,
        started: dict[str, Any],
        body: bytes,
        record: OperationRecord,
        epoch: int,
        counted: bool = False,
    ) -> None:
        headers = [
            (k, v)
            for k, v in started.get("headers", [])
            if k.lower() not in (b"content-length", b"cache-control")
        ]
        media = next((v for k, v in headers if k.lower() == b"content-type"), b"")
        cacheable = (
            key is not None
            and record.cacheable
            and started.get("status") == 200
            and media in _JSON_TYPES
            and record.ttl >= 1
            and record.generations
        )
        if counted:
            cache.stats.record(OPERATION, "MISS" if cacheable else "BYPASS")
        if not cacheable or key is None:
            headers.append((b"cache-control", b"no-store"))
            headers.extend(self._extra)
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**started, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if record.private:
            caller = self.identity(scope)
            self._private.add(key)
            if caller is None:
                key = None
            else:
                key += ":" + hashlib.sha256(caller.encode()).hexdigest()[:16]
        now = cache.clock()
        tags = tuple(sorted(record.generations))
        entry = LocalEntry(
            body,
            tags,
            now,
            now + int(record.ttl),
            (media.decode(), directives(record.private, record.window)),
            etag_of(body, media.decode()),
            window=record.window,
        )
        scope[STATUS] = "MISS"
        if key is not None:
            await self._store(cache, key, entry, record, scope.get(NAME))
            if cache.local_epoch == epoch:  # nothing was invalidated while we computed
                cache.local.put(key, entry)
        await respond(
            scope, send, entry, now, "MISS", self._extra, status=started.get("status", 200)
        )

    def _remember_tags(self, key: str, tags: tuple[str, ...], name: Any = None) -> None:
        self._tags[key] = tags
        self._tags.move_to_end(key)
        if isinstance(name, str):
            self._names[key] = name
        while len(self._tags) > self.max_known:
            self._names.pop(self._tags.popitem(last=False)[0], None)

    async def _store(
        self, cache: Cache, key: str, entry: LocalEntry, record: OperationRecord, name: Any
    ) -> None:
        self._remember_tags(key, entry.tags, name)
        backend = cache.trust.writer()
        if backend is None or record.epoch is None:
            return
        stored = {
            "b": entry.value.decode(),
            "m": entry.meta[0],
            "p": record.private,
            "t": entry.created,
            "a": int(record.ttl),
            "s": record.window,
            "tags": list(entry.tags),
            "g": [record.generations[t].decode() for t in entry.tags],
        }
        if isinstance(name, str):
            stored["n"] = name  # so that another process's hit knows which operation it was
        entry_key = cache.keys.operation(key, record.epoch)
        with contextlib.suppress(BackendError):
            await backend.set_many([(entry_key, orjson.dumps(stored), int(record.ttl * 1000))])
