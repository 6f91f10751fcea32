"""Persisted queries, in Apollo's protocol: a client may send only the SHA-256 of a query, so
that queries travel as short GET URLs that browsers and CDNs cache.

Two modes. `auto` (Automatic Persisted Queries): a client registers a query by sending it
with its hash; only a document of at most `max_bytes` that parsed and validated (it was
executed) is kept, and at most `max_kept` of them: an LRU in each process, and in Redis a
fixed set of `max_kept` slots, each hash with two candidate slots, so a flood of
registrations evicts older ones instead of growing anything. `safelist`: the queries come
from a file (an Apollo persisted query manifest) and nothing else runs, sent in full or by
hash; nothing is registered.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from cache import Cache
from cache.exceptions import BackendError
from graph.errors import ApiError, BadRequest

_DIGEST = re.compile(r"[0-9a-f]{64}")
# The slots bound how many are kept; the TTL only empties those of documents nobody sends.
TTL_MS = 86_400_000


class PersistedQueryNotFound(ApiError):
    """The hash is unknown: the client retries with the query (Apollo answers 200)."""

    code = "PERSISTED_QUERY_NOT_FOUND"
    status = 200


class _TooLarge(ApiError):
    code = "PERSISTED_QUERY_TOO_LARGE"
    status = 400


class _NotInList(ApiError):
    code = "PERSISTED_QUERY_NOT_IN_LIST"
    status = 400


def load_safelist(path: str) -> dict[str, str]:
    """hash -> query from an Apollo persisted query manifest; ValueError, naming the file and
    the operation, for anything that is not one."""
    try:
        manifest = orjson.loads(Path(path).read_bytes())
        operations = manifest["operations"]
        queries = {op["id"]: op["body"] for op in operations}
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a persisted query manifest: {exc!r}") from None
    for digest, body in queries.items():
        if not isinstance(body, str) or hashlib.sha256(body.encode()).hexdigest() != digest:
            raise ValueError(f"{path}: operation {digest!r} is not the SHA-256 of its body")
    return queries


class PersistedQueries:
    """Known queries by hash: in this process, and in Redis for every process."""

    def __init__(
        self,
        cache: Callable[[], Cache | None],
        *,
        max_kept: int = 2_000,
        max_bytes: int = 16_384,
        safelist: dict[str, str] | None = None,
    ) -> None:
        self.cache = cache
        self.max_kept = max_kept
        self.max_bytes = max_bytes
        self.safelist = safelist
        self._local: OrderedDict[str, str] = OrderedDict()

    async def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        """`params` with its query filled in from its hash, or unchanged; raises when the
        hash is unknown, does not match the query sent with it, or the query may not run."""
        extensions = params.get("extensions")
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        digest = None
        if isinstance(persisted, dict):
            digest = persisted.get("sha256Hash")
            if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
                raise BadRequest("persistedQuery.sha256Hash must be 64 lowercase hex characters")
        query = params.get("query")
        if not isinstance(query, str):
            if digest is None:
                return params  # no query at all: refused further on
            if self.safelist is not None:
                found = self.safelist.get(digest)
                if found is None:
                    raise _NotInList("this hash is not in the safelist")
            else:
                found = await self._recall(digest)
                if found is None:
                    raise PersistedQueryNotFound("PersistedQueryNotFound")
            return {**params, "query": found}
        if digest is None and self.safelist is None:
            return params  # an ordinary query
        encoded = query.encode()
        if digest is not None and self.safelist is None and len(encoded) > self.max_bytes:
            raise _TooLarge(f"a persisted query is at most {self.max_bytes:,} bytes")
        sent = hashlib.sha256(encoded).hexdigest()
        if digest is not None and sent != digest:
            raise BadRequest("provided sha does not match query")
        if self.safelist is not None and sent not in self.safelist:
            raise _NotInList("only the operations of the safelist run here")
        return params

    async def register(self, params: dict[str, Any]) -> None:
        """Keep the query `params` sent with its hash, once it executed: `resolve` has checked
        the hash and the size, and execution that the document parsed and validated."""
        extensions = params.get("extensions")
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        query = params.get("query")
        if self.safelist is not None or not isinstance(persisted, dict) or not query:
            return
        digest = persisted["sha256Hash"]
        if digest in self._local:
            self._local.move_to_end(digest)
            return
        self._keep(digest, query)
        cache = self.cache()
        backend = cache.trust.writer() if cache is not None else None
        if cache is None or backend is None:
            return
        keys = self._slots(cache, digest)
        prefix = digest.encode() + b"\n"
        with contextlib.suppress(BackendError):
            held = await backend.get_many(keys)
            if any(v is not None and v.startswith(prefix) for v in held):
                return  # another process registered it
            free = [k for k, v in zip(keys, held, strict=True) if v is None]
            slot = free[0] if free else random.choice(keys)
            await backend.set_many([(slot, prefix + query.encode(), TTL_MS)])

    def _slots(self, cache: Cache, digest: str) -> list[str]:
        """The two Redis keys a hash may live under: at most `max_kept` keys in all."""
        return [
            cache.keys.persisted(str(int(digest[i : i + 8], 16) % self.max_kept)) for i in (0, 8)
        ]

    async def _recall(self, digest: str) -> str | None:
        query = self._local.get(digest)
        if query is not None:
            return query
        cache = self.cache()
        # A query is stored with its own hash: no invalidation can make it stale, so any
        # answering backend will do.
        backend = cache.trust.writer() if cache is not None else None
        if cache is None or backend is None:
            return None
        try:
            held = await backend.get_many(self._slots(cache, digest))
        except BackendError:
            return None
        prefix = digest.encode() + b"\n"
        for value in held:
            if value is not None and value.startswith(prefix):
                query = value[len(prefix) :].decode()
                self._keep(digest, query)
                return query
        return None

    def _keep(self, digest: str, query: str) -> None:
        self._local[digest] = query
        while len(self._local) > self.max_kept:
            self._local.popitem(last=False)
