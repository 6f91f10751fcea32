"""Which whole operation a request asks for: its key, for a request the app would accept
exactly as an ordinary one and nothing else, and a bounded memo of recent requests' keys.

The rules follow the app's own parsing (graph/http.py `_params` and `_check`, and the
persisted query protocol) but may only ever be stricter: a request not keyed here is
answered by the app, errors included, while one keyed here may be answered from an entry
that an ordinary request stored.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from typing import Any

import orjson

from cache.http import header

# A request this large is never keyed: a cacheable query is a small document with small
# variables, while a crawler's batch (a mutation) or a document over the size limit would
# be parsed, sorted and hashed here only to be passed on (a 9 MB body: 20 ms).
KEYED_BYTES = 64 * 1024
# Only requests this small are remembered, every byte the memo keeps counted (headers too):
# at most `capacity` times this much.
MEMO_BYTES = 8192
_DIGEST = re.compile(r"[0-9a-f]{64}")


class Memo:
    """The keys of the `capacity` most recent small requests, by the request's bytes: the
    same request bytes always make the same key, so a repeated one skips the parsing. Every
    header the key (or its variant) reads is part of what is remembered."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[tuple[Any, ...], str] = OrderedDict()

    def key(
        self,
        scope: MutableMapping[str, Any],
        body: bytes,
        compute: Callable[[], str | None],
    ) -> str | None:
        """The key `compute()` gives for this request, remembered if the request is small."""
        memo = (
            scope["method"],
            scope.get("query_string", b""),
            body,
            header(scope, b"accept"),
            header(scope, b"content-type"),
        )
        small = sum(len(part or b"") for part in memo) <= MEMO_BYTES
        key = self._keys.get(memo) if small else None
        if key is None:
            key = compute()
            if key is not None and small:
                self._keys[memo] = key
                if len(self._keys) > self.capacity:
                    self._keys.popitem(last=False)
        return key

    def __len__(self) -> int:
        return len(self._keys)


def operation_key(scope: MutableMapping[str, Any], body: bytes, variant: str) -> str | None:
    """document hash | operation name | canonical variables | variant; None when the request
    is not one the app accepts exactly as an ordinary request. A body is keyed only as JSON:
    any other content type, even one the app accepts, goes to the app."""
    try:
        params = _params(scope, body)
        if params is None:
            return None
        query, extensions = params.get("query"), params.get("extensions")
        # As the app reads it: a persistedQuery that is not an object is no persisted query.
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        digest = None
        if isinstance(persisted, dict):
            digest = persisted.get("sha256Hash")
            if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
                return None
        if isinstance(query, str):
            if not query.strip():
                return None
            if digest is not None:
                # A registration: the app checks it (the hash, the persisted size limit) and
                # registers it; an entry must not answer in its place.
                return None
            document = hashlib.sha256(query.encode()).hexdigest()
        elif query is None and digest is not None:
            document = digest
        else:
            return None
        variables = params.get("variables")
        if variables is not None and not isinstance(variables, dict):
            return None
        # Plain JSON: sorted by orjson alone (canonical_args walks it in Python, 0.2 s for a
        # crawler's 1,000-threat batch).
        canonical = orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS)
        if b"\\u0000" in canonical:
            return None  # the app refuses a NUL in variables
        # Absent and null are the app's None; "" is a name no operation has.
        name = params.get("operationName")
        if name is not None and (not isinstance(name, str) or not name):
            return None
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    raw_key = f"{document}|{name or ''}|{canonical.decode()}|{variant}"
    return hashlib.sha256(raw_key.encode()).hexdigest()[:40]


def _params(scope: MutableMapping[str, Any], body: bytes) -> dict[str, Any] | None:
    """The request's GraphQL parameters as the app parses them, or None."""
    if scope["method"] == "GET":
        query_string = scope.get("query_string", b"")
        if not query_string.isascii():
            return None  # a browser or client percent-encodes: leave the rest to the app
        # As Starlette's QueryParams: blank values kept, the last of a repeated name wins.
        pairs = urllib.parse.parse_qsl(query_string.decode("ascii"), keep_blank_values=True)
        params: dict[str, Any] = dict(pairs)
        for name in ("variables", "extensions"):
            if name in params:
                params[name] = orjson.loads(params[name])
        return params
    content_type = header(scope, b"content-type") or b""
    if content_type.split(b";")[0].strip().lower() != b"application/json":
        return None
    parsed = orjson.loads(body)
    return parsed if isinstance(parsed, dict) else None
