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
from graphql import FieldNode, get_operation_ast
from strawberry.extensions import SchemaExtension
from strawberry.extensions.field_extension import AsyncExtensionResolver, FieldExtension
from strawberry.schema_directive import Location
from strawberry.types import Info
from strawberry.types.field import StrawberryField
from strawberry.types.graphql import OperationType

from cache.codec import Decoder, decoder_for
from cache.layer import Cache, Lookup
from cache.policy import Boundary, CachePolicy, Scope, Tags

CacheControlScope = strawberry.enum(
    Scope,
    name="CacheControlScope",
    description="Who may reuse a cached answer: anyone, or only the caller.",
)


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION],
    name="cacheControl",
    description="How long a field's answer may be reused (seconds), by whom, and how long it may be served stale while it is recomputed.",
)
class CacheControl:
    """Apollo's cache hint: how long a field's answer may be reused, and by whom."""

    max_age: int
    scope: CacheControlScope | None = strawberry.UNSET  # type: ignore[valid-type]
    # Ours, not Apollo's: seconds an expired answer may be served while it is recomputed.
    stale_while_revalidate: int | None = strawberry.UNSET


@dataclass
class OperationRecord:
    """What one execution teaches the whole-operation cache: whether every root field was
    served by the cache, and the policy composed from them as Apollo composes it (the
    smallest max age, PRIVATE if any field is, the union of their tags; the smallest
    stale-while-revalidate window, none if a field has none)."""

    cacheable: bool = True
    ttl: float = float("inf")
    private: bool = False
    swr: float = float("inf")
    generations: dict[str, bytes] = field(default_factory=dict)
    epoch: str | None = None  # the cache epoch when the operation began; None: not stored

    @property
    def window(self) -> int:
        """The composed stale-while-revalidate window in seconds, 0 for none."""
        return 0 if self.swr == float("inf") else int(self.swr)

    def add(self, lookup: Lookup, scope: Scope, swr: int = 0) -> None:
        if lookup.generations is None:
            self.cacheable = False
            return
        self.ttl = min(self.ttl, lookup.ttl)
        self.swr = min(self.swr, swr)
        self.private = self.private or scope is Scope.PRIVATE
        for tag, generation in zip(lookup.tags, lookup.generations, strict=True):
            if self.generations.setdefault(tag, generation) != generation:
                self.cacheable = False  # two fields saw different generations: never valid


@dataclass
class _Operation:
    cache: Cache
    identity: str | None
    records: list[dict[str, Any]] | None = field(default=None)
    record: OperationRecord | None = None


def _every_root_field_cached(context: Any) -> bool:
    """A query whose root selections are plain fields, each with a cache policy."""
    if context.operation_type is not OperationType.QUERY or context.graphql_document is None:
        return False
    operation = get_operation_ast(context.graphql_document, context.operation_name)
    if operation is None:
        return False
    schema = context.schema
    for selection in operation.selection_set.selections:
        if not isinstance(selection, FieldNode) or selection.directives:
            return False
        name = selection.name.value
        if name == "__typename":
            continue
        field_ = schema.get_field_for_type(name, "Query")
        if field_ is None or not any(isinstance(e, CachedField) for e in field_.extensions):
            return False
    return True


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
            record = _from_context(context, "cache_operation")
            state = _Operation(
                cache,
                _from_context(context, "cache_identity"),
                records,
                record if isinstance(record, OperationRecord) else None,
            )
            if records is not None and state.record is not None:
                state.record.cacheable = False  # an answer with keys in it is never stored
        self._state = state
        token = _operation.set(state)
        try:
            yield
        finally:
            _operation.reset(token)
        if state is not None and state.record is not None:
            result = self.execution_context.result
            if self.execution_context.pre_execution_errors or result is None or result.errors:
                state.record.cacheable = False

    def on_execute(self) -> Iterator[None]:
        state = getattr(self, "_state", None)
        if (
            state is not None
            and state.record is not None
            and not _every_root_field_cached(self.execution_context)
        ):
            state.record.cacheable = False
        yield

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
        swr = self.policy.swr or strawberry.UNSET
        directive = CacheControl(
            max_age=self.policy.max_age, scope=scope, stale_while_revalidate=swr
        )
        if directive not in field.directives:  # once, however many schemas share the field
            field.directives.append(directive)

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
        # A refreshable field's compute is kept to be called again later: it holds the
        # context (the database, the clock) but not the request's document and variables.
        bound = _detached(info) if self.policy.refresh or self.policy.swr else info
        value, lookup = await state.cache.resolve(
            self.policy,
            coordinate,
            kwargs,
            lambda: next_(source, bound, **kwargs),
            self._decoder(),
            state.identity,
        )
        if state.record is not None:
            state.record.add(lookup, self.policy.scope, self.policy.swr)
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


def _detached(info: Info) -> Info:
    """`info` without what only its request needs: the resolver gets the same context."""
    # Empty, not copied: a refreshable resolver reads none of them (see `CachePolicy`).
    raw = info._raw_info._replace(
        field_nodes=[],
        fragments={},
        operation=None,  # type: ignore[arg-type]
        variable_values={},  # type: ignore[arg-type]
        root_value=None,
    )
    return type(info)(_raw_info=raw, _field=info._field)


def cache_control(
    max_age: int,
    *,
    scope: Scope = Scope.PUBLIC,
    group: str = "default",
    tags: Tags | None = None,
    boundary: Boundary | None = None,
    refresh: bool = False,
    swr: int = 0,
) -> CachedField:
    """Declare a field cacheable: put the result in `extensions=[...]` of `strawberry.field`.
    `refresh=True` only for a resolver that uses nothing of the request (see `CachePolicy`)."""
    return CachedField(CachePolicy(max_age, scope, group, tags, boundary, refresh, swr))
