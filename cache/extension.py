"""The Strawberry side: a field extension per cached field, a schema extension per operation.

    @strawberry.field(extensions=[cache_control(max_age=60, group="stats")])
    async def stats(self, info: Info) -> Stats: ...

    schema = strawberry.Schema(Query, extensions=[CacheExtension], schema_directives=...)

The operation's context must carry the `Cache` as `context.cache` (attribute or key); it may
carry `cache_identity` (who is asking, for PRIVATE fields) and `cache_debug` (report every
cached field's status in `extensions.cache`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.extensions.field_extension import AsyncExtensionResolver, FieldExtension
from strawberry.schema_directive import Location
from strawberry.types import Info
from strawberry.types.field import StrawberryField

from cache.codec import Decoder, decoder_for
from cache.layer import Cache
from cache.policy import Boundary, CachePolicy, Scope, Tags

CacheControlScope = strawberry.enum(Scope, name="CacheControlScope")


@strawberry.schema_directive(locations=[Location.FIELD_DEFINITION], name="cacheControl")
class CacheControl:
    """Apollo's cache hint: how long a field's answer may be reused, and by whom."""

    max_age: int
    scope: CacheControlScope | None = strawberry.UNSET  # type: ignore[valid-type]


@dataclass
class _Operation:
    cache: Cache
    identity: str | None
    records: list[dict[str, Any]] | None = field(default=None)


_operation: contextvars.ContextVar[_Operation | None] = contextvars.ContextVar(
    "cache_operation", default=None
)


def _from_context(context: Any, name: str) -> Any:
    if isinstance(context, dict):
        return context.get(name)
    return getattr(context, name, None)


class CacheExtension(SchemaExtension):
    """Sets up the cache for one operation and reports `extensions.cache` when asked."""

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context.context
        cache = _from_context(context, "cache")
        state = None
        if isinstance(cache, Cache):
            records: list[dict[str, Any]] | None = (
                [] if _from_context(context, "cache_debug") else None
            )
            state = _Operation(cache, _from_context(context, "cache_identity"), records)
        self._state = state
        token = _operation.set(state)
        try:
            yield
        finally:
            _operation.reset(token)

    def get_results(self) -> dict[str, Any]:
        state = getattr(self, "_state", None)
        if state is None or state.records is None:
            return {}
        return {"cache": state.records}


class CachedField(FieldExtension):
    """Serves a field through the operation's cache according to `policy`."""

    def __init__(self, policy: CachePolicy) -> None:
        self.policy = policy
        self._decode: Decoder | None = None
        self._field: StrawberryField | None = None
        self._coordinate: str | None = None

    def apply(self, field: StrawberryField) -> None:
        self._field = field
        # Printed as Apollo prints it: the scope only when it is not the default.
        scope = self.policy.scope if self.policy.scope is Scope.PRIVATE else strawberry.UNSET
        field.directives.append(CacheControl(max_age=self.policy.max_age, scope=scope))

    def _coordinate_of(self, info: Info) -> str:
        self._coordinate = f"{info._raw_info.parent_type.name}.{info.field_name}"
        return self._coordinate

    def _decoder(self) -> Decoder:
        if self._decode is None:
            assert self._field is not None
            self._decode = decoder_for(self._field.type)
        return self._decode

    async def resolve_async(
        self, next_: AsyncExtensionResolver, source: Any, info: Info, **kwargs: Any
    ) -> Any:
        state = _operation.get()
        if state is None:
            return await next_(source, info, **kwargs)
        coordinate = self._coordinate or self._coordinate_of(info)
        value, lookup = await state.cache.resolve(
            self.policy,
            coordinate,
            kwargs,
            lambda: next_(source, info, **kwargs),
            self._decoder(),
            state.identity,
        )
        if state.records is not None:
            state.records.append(
                {
                    "path": list(info.path.as_list()),
                    "status": lookup.status,
                    "key": lookup.key,
                    "age": None if lookup.age is None else round(lookup.age, 3),
                }
            )
        return value


def cache_control(
    max_age: int,
    *,
    scope: Scope = Scope.PUBLIC,
    group: str = "default",
    tags: Tags | None = None,
    boundary: Boundary | None = None,
) -> CachedField:
    """Declare a field cacheable: put the result in `extensions=[...]` of `strawberry.field`."""
    return CachedField(CachePolicy(max_age, scope, group, tags, boundary))
