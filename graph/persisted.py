"""Automatic Persisted Queries, in Apollo's protocol: a client may send only the SHA-256 of
a query it sent before, so that queries travel as short GET URLs that browsers and CDNs cache."""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from cache import Cache
from cache.exceptions import BackendError
from graph.errors import ApiError, BadRequest

_DIGEST = re.compile(r"[0-9a-f]{64}")
TTL_MS = 7 * 86_400_000


class PersistedQueryNotFound(ApiError):
    """The hash is unknown: the client retries with the query (Apollo answers 200)."""

    code = "PERSISTED_QUERY_NOT_FOUND"
    status = 200


class PersistedQueries:
    """Known queries by hash: in this process, and in Redis for every process."""

    def __init__(self, cache: Callable[[], Cache | None], max_local: int = 5_000) -> None:
        self.cache = cache
        self.max_local = max_local
        self._local: OrderedDict[str, str] = OrderedDict()

    async def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        """`params` with its query filled in from its hash, or unchanged; raises when the
        hash is unknown or does not match the query sent with it."""
        extensions = params.get("extensions")
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        if not isinstance(persisted, dict):
            return params
        digest = persisted.get("sha256Hash")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise BadRequest("persistedQuery.sha256Hash must be 64 lowercase hex characters")
        query = params.get("query")
        if isinstance(query, str):
            if hashlib.sha256(query.encode()).hexdigest() != digest:
                raise BadRequest("provided sha does not match query")
            await self._remember(digest, query)
            return params
        found = await self._recall(digest)
        if found is None:
            raise PersistedQueryNotFound("PersistedQueryNotFound")
        return {**params, "query": found}

    async def _remember(self, digest: str, query: str) -> None:
        if digest in self._local:
            self._local.move_to_end(digest)
            return
        self._keep(digest, query)
        cache = self.cache()
        backend = cache.trust.writer() if cache is not None else None
        if cache is not None and backend is not None:
            with contextlib.suppress(BackendError):
                await backend.set_many([(cache.keys.persisted(digest), query.encode(), TTL_MS)])

    async def _recall(self, digest: str) -> str | None:
        query = self._local.get(digest)
        if query is not None:
            return query
        cache = self.cache()
        # A query is stored under its own hash: no invalidation can make it stale, so any
        # answering backend will do.
        backend = cache.trust.writer() if cache is not None else None
        if cache is None or backend is None:
            return None
        try:
            raw = (await backend.get_many([cache.keys.persisted(digest)]))[0]
        except BackendError:
            return None
        if raw is None:
            return None
        query = raw.decode()
        self._keep(digest, query)
        return query

    def _keep(self, digest: str, query: str) -> None:
        self._local[digest] = query
        while len(self._local) > self.max_local:
            self._local.popitem(last=False)
