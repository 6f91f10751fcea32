"""Keys: namespace, schema version, field coordinate and a canonical encoding of arguments.

Arguments are encoded after defaults are applied, objects with sorted keys, so argument
order and omitted-versus-default never change a key; `None` and `""` encode differently.
Long encodings are hashed, so keys stay short whatever the input. No key is ever used as
a glob pattern.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import math
import secrets
from typing import Any

import orjson
from strawberry import UNSET

MAX_ARGS_LENGTH = 120
GENERATION_TTL_MS = 7 * 86_400_000


def new_generation() -> bytes:
    """A tag's next generation. Random, never a counter: a tag whose key was evicted or lost
    in a restart can never come back with a value that an old entry was stored under."""
    return secrets.token_hex(8).encode()


def _plain(value: Any) -> Any:
    """Arguments as plain JSON values: input objects become sorted dicts, enums their value."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        raise TypeError("a non-finite float has no canonical key")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Strawberry input objects; UNSET fields (absent from the request) are left out.
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not UNSET
        }
    raise TypeError(f"cannot use a {type(value).__name__} in a cache key")


def canonical_args(args: dict[str, Any]) -> str:
    """The arguments as one short, stable string."""
    if not args:
        return "-"
    encoded = orjson.dumps(_plain(args), option=orjson.OPT_SORT_KEYS).decode()
    if len(encoded) > MAX_ARGS_LENGTH:
        return "#" + hashlib.sha256(encoded.encode()).hexdigest()[:32]
    return encoded


def fingerprint(text: str) -> str:
    """A short stable hash: the schema version in every key."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclasses.dataclass(frozen=True, slots=True)
class KeySpace:
    """Where this application's keys live: entries under `namespace:e:version:epoch:`, tag
    generations under `namespace:g:`, so no entry pattern can ever match a generation. The
    epoch (see `cache.epoch`) is the data's: a new one makes every older entry unreachable.

    Generations, the restart marker and the invalidation channel carry the hash tag
    `{namespace}`: on Redis Cluster they share one slot, so an invalidation is one pipeline
    to one node and its message is published (sharded) on that node too. Entries have no
    tag of ours and spread over the cluster. On one node the braces change nothing."""

    namespace: str
    version: str

    @property
    def prefix(self) -> str:
        return f"{self.namespace}:"

    def entry(
        self,
        group: str,
        coordinate: str,
        args: str,
        bucket: str = "",
        identity: str | None = None,
        epoch: str = "-",
    ) -> str:
        key = f"{self.namespace}:e:{self.version}:{epoch}:{group}:{coordinate}:{args}"
        if bucket:
            key += f":@{bucket}"
        if identity is not None:
            key += f":u:{hashlib.sha256(identity.encode()).hexdigest()[:16]}"
        return key

    def operation(self, key: str, epoch: str = "-") -> str:
        return f"{self.namespace}:o:{self.version}:{epoch}:{key}"

    def operations(self) -> str:
        return f"{_glob_literal(self.namespace)}:o:*"

    def persisted(self, digest: str) -> str:
        return f"{self.namespace}:q:{digest}"

    def entries_of(self, group: str | None = None) -> str:
        """A glob for every entry (of one group), in every schema version. Built from a
        validated group name only: user input never reaches a pattern."""
        namespace = _glob_literal(self.namespace)
        if group is None:
            return f"{namespace}:e:*"
        return f"{namespace}:e:*:{_glob_literal(group)}:*"

    def generation(self, tag: str) -> str:
        # Generations outlive schema versions: a tag bumped once is stale for every version.
        if len(tag) > MAX_ARGS_LENGTH:
            tag = "#" + hashlib.sha256(tag.encode()).hexdigest()[:32]
        return f"{self.namespace}:g:{self.shard}:{tag}"

    @property
    def shard(self) -> str:
        """The hash tag of the keys that must live together (see the class docstring)."""
        return "{" + self.namespace + "}"

    @property
    def run_marker(self) -> str:
        """The run id of the Redis server that holds the generations (see `guard_restarts`)."""
        return f"{self.namespace}:run:{self.shard}"

    @property
    def channel(self) -> str:
        """Where invalidations are announced; acknowledgements come back on channels named
        after it, so in the same slot."""
        return f"{self.namespace}:invalidations:{self.shard}"

    def lease(self, entry_key: str, generations: tuple[bytes, ...]) -> str:
        digest = hashlib.sha256(b"|".join(generations)).hexdigest()[:12]
        return f"{entry_key}:lease:{digest}"


def _glob_literal(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
