"""The GraphQL schema: the contract's queries and mutations over `resolvers`, with cache policies."""

from __future__ import annotations

import functools
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext, Info

from cache import CacheExtension, cache_control, daily
from graph import tags
from graph.admin import CacheStats, ClearResult, clear_cache, read_cache_stats
from graph.context import MUTATION_ROLES, Context
from graph.errors import ErrorCodes, log_errors
from graph.limits import Documents, Limits, QueryLimits
from graph.scalars import SCALAR_OVERRIDES
from graph.types import (
    IngestResult,
    SeverityCount,
    SourceCount,
    Stats,
    Threat,
    ThreatFilter,
    ThreatInput,
    ThreatPage,
    TrendPoint,
    from_flat_record,
)
from resolvers import dashboard, ingest, threats
from resolvers.errors import InvalidInput

ContextInfo = Info[Context, None]

# Defaults as in the original REST service; each group's TTL is configurable at run time.
# refresh=True: recomputed after an ingest, before readers ask. Only for resolvers that use
# nothing of the request but `ctx.db` and `ctx.clock()` (read when they run); not `threat`,
# whose DataLoader belongs to the request.
# swr: served that many seconds past max age (no write since) while recomputed; same rule.
STATS = cache_control(max_age=60, group="stats", tags=tags.aggregate_tags, refresh=True, swr=30)
THREAT_LIST = cache_control(max_age=120, group="threats", tags=tags.list_tags, refresh=True, swr=30)
THREAT = cache_control(max_age=120, group="threats", tags=tags.threat_tags)
TREND = cache_control(
    max_age=180, group="charts", tags=tags.aggregate_tags, boundary=daily, refresh=True, swr=30
)
SEVERITY_CHART = cache_control(
    max_age=180, group="charts", tags=tags.aggregate_tags, refresh=True, swr=30
)
SOURCE_CHART = cache_control(
    max_age=180, group="charts", tags=tags.aggregate_tags, refresh=True, swr=30
)


@strawberry.type(description="What the dashboard reads. Every field is cached (see @cacheControl).")
class Query:
    @strawberry.field(description="Totals for the dashboard header.", extensions=[STATS])
    async def stats(self, info: ContextInfo) -> Stats:
        ctx = info.context
        record = await dashboard.stats(ctx.db, now=ctx.clock())
        return from_flat_record(Stats, record)  # type: ignore[no-any-return]

    @strawberry.field(description="One page of threats, newest first.", extensions=[THREAT_LIST])
    async def threats(
        self,
        info: ContextInfo,
        page: Annotated[int, strawberry.argument(description="Which page, from 1.")] = 1,
        limit: Annotated[int, strawberry.argument(description="Threats per page, 1 to 100.")] = 10,
        filter: Annotated[
            ThreatFilter | None, strawberry.argument(description="Which threats; all when absent.")
        ] = None,
    ) -> ThreatPage:
        where = filter.to_record() if filter is not None else None
        record = await threats.list_threats(info.context.db, page=page, limit=limit, where=where)
        return ThreatPage.from_record(record)

    @strawberry.field(description="One threat by id, or null.", extensions=[THREAT])
    async def threat(
        self,
        info: ContextInfo,
        id: Annotated[strawberry.ID, strawberry.argument(description="The threat's id.")],
    ) -> Threat | None:
        if not tags.is_threat_id(id):
            raise InvalidInput(f"{id!r} is not a threat id", argument="id")
        record = await info.context.threat_loader.load(int(id))
        return Threat.from_record(record) if record is not None else None

    @strawberry.field(
        description="Threats published per UTC day, oldest first, zero-filled.", extensions=[TREND]
    )
    async def trend(
        self,
        info: ContextInfo,
        days: Annotated[
            int, strawberry.argument(description="How many days up to today, 1 to 366.")
        ] = 10,
    ) -> list[TrendPoint]:
        ctx = info.context
        points = await dashboard.trend(ctx.db, days=days, now=ctx.clock())
        return [from_flat_record(TrendPoint, p) for p in points]

    @strawberry.field(
        description="Every severity with its count, CRITICAL first.", extensions=[SEVERITY_CHART]
    )
    async def severity_breakdown(self, info: ContextInfo) -> list[SeverityCount]:
        counts = await dashboard.severity_breakdown(info.context.db)
        return [from_flat_record(SeverityCount, c) for c in counts]

    @strawberry.field(description="The largest sources by count.", extensions=[SOURCE_CHART])
    async def source_breakdown(
        self,
        info: ContextInfo,
        limit: Annotated[int, strawberry.argument(description="How many sources, 1 to 100.")] = 10,
    ) -> list[SourceCount]:
        counts = await dashboard.source_breakdown(info.context.db, limit=limit)
        return [from_flat_record(SourceCount, c) for c in counts]

    @strawberry.field(description="Hits and misses of the cache, in total and per field.")
    async def cache_stats(self, info: ContextInfo) -> CacheStats:
        return await read_cache_stats(info.context.cache)


@strawberry.type(description="Writes: the crawler's ingest and the admin's cache clearing.")
class Mutation:
    @strawberry.mutation(description="The crawler's upsert: at most 1,000 threats, all or nothing.")
    async def ingest_threats(
        self,
        info: ContextInfo,
        threats: Annotated[
            list[ThreatInput], strawberry.argument(description="The batch, 1 to 1,000 threats.")
        ],
    ) -> IngestResult:
        ctx = info.context
        ctx.require(MUTATION_ROLES["ingestThreats"])
        batch = [t.to_record() for t in threats]
        outcome = await ingest.ingest(ctx.db, batch, now=ctx.clock())
        if ctx.cache is not None:
            # Committed; every answer it could change is stale before this returns.
            await ctx.cache.invalidate(tags.changed_tags(outcome.changes))
        if outcome.pending is not None:
            await ctx.db.settled(outcome.pending)
        return IngestResult(
            inserted=outcome.inserted, updated=outcome.updated, unchanged=outcome.unchanged
        )

    @strawberry.mutation(
        description="Drop cached answers: all of them, or one family ('stats:*', 'threats:*', 'charts:*')."
    )
    async def clear_cache(
        self,
        info: ContextInfo,
        pattern: Annotated[
            str | None, strawberry.argument(description="A family, or all when absent.")
        ] = None,
    ) -> ClearResult:
        info.context.require(MUTATION_ROLES["clearCache"])
        return await clear_cache(info.context.cache, pattern)


class Schema(strawberry.Schema):
    hide_suggestions = False  # no "Did you mean...?" in production: it reveals the schema

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_errors(errors)

    def _get_custom_context_kwargs(
        self, operation_extensions: dict[str, Any] | None = None, *, sync: bool = False
    ) -> dict[str, Any]:
        # What Strawberry passes on to graphql-core's execute(): there, variable coercion.
        kwargs = super()._get_custom_context_kwargs(operation_extensions, sync=sync)
        return {**kwargs, "hide_suggestions": self.hide_suggestions}


@functools.cache
def build_schema(limits: Limits, *, hide_suggestions: bool = False) -> Schema:
    """The schema enforcing `limits`: one per distinct Limits, with its own document cache;
    with `hide_suggestions` (production), errors never suggest a name of the schema."""
    documents = Documents()
    built = Schema(
        query=Query,
        mutation=Mutation,
        scalar_overrides=SCALAR_OVERRIDES,
        extensions=[
            ErrorCodes,
            CacheExtension,
            lambda: QueryLimits(limits, documents, hide_suggestions=hide_suggestions),
        ],
    )
    built.hide_suggestions = hide_suggestions
    return built


schema = build_schema(Limits())


def export_sdl() -> str:
    """The SDL that `schema.graphql` must hold."""
    return schema.as_str() + "\n"
