"""The ASGI application: GraphQL at /graphql, the dashboard at /, health and cache admin."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp

from cache import Cache
from cache.backends import MemoryBackend, backend_for
from cache.keys import fingerprint
from cache.operation import OperationCache
from graph.admin import cache_stats_dict, clear_cache
from graph.body_limit import BodyLimit
from graph.context import Context, Role, Tokens
from graph.errors import ApiError, http_error, status_error
from graph.http import SecurityHeaders, graphql_endpoint, json_response, response_variant
from graph.metrics import CONTENT_TYPE, CacheMetrics, Observe, gone
from graph.pages import DASHBOARD_OPERATION, add_pages
from graph.persisted import PersistedQueries, load_safelist
from graph.schema import build_schema, schema
from graph.settings import Settings, get_settings
from resolvers.errors import ResolverError
from resolvers.store import Database

logger = logging.getLogger("vajra")

# Part of every key: a changed schema or value encoding never reads old entries.
CODEC_VERSION = "1"


def build_cache(settings: Settings, db: Database) -> Cache | None:
    """The process's cache: Redis (one node, a Sentinel group or a cluster, as REDIS_URL
    says) behind a breaker, and the epoch kept in the database it caches. A REDIS_URL of a
    form not supported fails here, at startup (ValueError)."""
    if not settings.cache_enabled:
        return None
    timeout = settings.cache_timeout_ms / 1000
    return Cache(
        backend_for(settings.redis_url, timeout=timeout),
        namespace=settings.cache_namespace,
        schema_version=fingerprint(schema.as_str() + CODEC_VERSION),
        # Off by default: a process that is not alone cannot hear, while Redis is away, what
        # the others invalidate (see cache/trust.py).
        fallback=(
            MemoryBackend(settings.cache_fallback_entries)
            if settings.cache_fallback_entries
            else None
        ),
        epochs=db.epochs,
        poll=settings.cache_epoch_poll_ms / 1000,
        # How long a process trusts what it holds without hearing from Redis: long enough
        # for a garbage collection (GC pauses of 100-190 ms were seen under load).
        window=max(0.5, 5 * timeout),
        local_bytes=settings.cache_local_mb * 1024 * 1024,
        refresh_entries=settings.cache_refresh_entries,
        refresh_every=settings.cache_refresh_every_ms / 1000,
        max_age={
            "stats": settings.cache_ttl_stats,
            "threats": settings.cache_ttl_threats,
            "charts": settings.cache_ttl_charts,
        },
    )


ORPHAN_AFTER = 10.0  # seconds an ingest's invalidation may take before it counts as lost
SWEEP_EVERY = 5.0


async def sweep_orphans(db: Database, cache: Cache | None, older_than: float) -> int:
    """Ingests whose process died between their commit and their invalidation: a new cache
    epoch covers them. Returns how many there were."""
    orphans = await db.orphans(older_than)
    if orphans:
        if cache is not None:
            logger.warning("%d ingest(s) were never invalidated: a new cache epoch", len(orphans))
            await cache.reset()
        await db.settled(*orphans)
    return len(orphans)


async def _sweep(db: Database, cache: Cache | None) -> None:
    while True:
        try:
            await sweep_orphans(db, cache, ORPHAN_AFTER)
        except Exception:  # the database is away: the next sweep tries again
            logger.warning("cannot sweep pending invalidations", exc_info=True)
        await asyncio.sleep(SWEEP_EVERY)


def create_app(
    settings: Settings | None = None, db: Database | None = None, cache: Cache | None = None
) -> ASGIApp:
    """Build the app; tests hand in a database or a cache they own."""
    settings = settings or get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    database = db or Database(settings.database_url)
    tokens = Tokens(crawler=settings.crawler_token, admin=settings.admin_token)
    state: dict[str, Cache | None] = {"cache": cache}
    cache_metrics = CacheMetrics()
    if cache is not None:  # a test's: counted from now, lifespan or not
        cache_metrics.attach(cache)
    multiprocess_dir = settings.prometheus_multiproc_dir

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await database.create_schema()
        owned = state["cache"] is None
        if owned:
            state["cache"] = build_cache(settings, database)
        current = state["cache"]
        if current is not None:
            if owned:
                cache_metrics.attach(current)
            await current.start()
        sweeper = asyncio.create_task(_sweep(database, current), name="pending-invalidations")
        flusher = asyncio.create_task(observe.flushing(), name="metrics")
        try:
            yield
        finally:
            for task in (sweeper, flusher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            current = state["cache"]
            if owned and current is not None:
                await current.close()
            if db is None:
                await database.close()
            cache_metrics.detach()
            if multiprocess_dir is not None:
                # This worker's live gauges (its breaker) no longer count; its counters do.
                gone(multiprocess_dir)

    # No schema browsing in production, REST or GraphQL; /docs is served by graph/pages.py
    # with local assets, and ReDoc (which only loads from a CDN) is off.
    # No redirect to the path with(out) a trailing slash: Starlette builds it from the Host
    # header, which the client chooses.
    app = FastAPI(
        title="Vajra",
        redirect_slashes=False,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None if settings.production else "/openapi.json",
    )
    app.state.db = database
    add_pages(app, production=settings.production)

    # Every refusal, whatever the route or method, in the API's error shape.
    @app.exception_handler(StarletteHTTPException)
    async def http_refusal(_request: Request, exc: StarletteHTTPException) -> Response:
        return json_response(
            status_error(exc.status_code, str(exc.detail)),
            exc.status_code,
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(_request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return json_response(status_error(400, f"bad request parameters: {problems}"[:300]), 400)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(_request: Request, _exc: ClientDisconnect) -> Response:
        # The client hung up, or the server gave up on its body (graph/protocol.py): not a
        # bug, and nobody reads this answer.
        return json_response(status_error(400, "the client went away during its request"), 400)

    @app.exception_handler(Exception)
    async def bug(_request: Request, exc: Exception) -> Response:
        logger.error("unexpected error", exc_info=exc)
        return json_response(status_error(500, "Internal server error"), 500)

    def debug(headers: Headers) -> bool:
        """X-Cache-Debug: 1 is honoured (keys shown, the whole-operation cache skipped) for
        the admin's token, or for anyone on a development server; otherwise ignored."""
        return headers.get("x-cache-debug") == "1" and (
            (settings.cache_debug_header and not settings.production)
            or tokens.grants(Role.ADMIN, headers.get("authorization"))
        )

    def context_for(request: Request) -> Context:
        return Context(
            db=database,
            tokens=tokens,
            authorization=request.headers.get("authorization"),
            cache=state["cache"],
            cache_debug=debug(request.headers),
            cache_operation=request.scope.get("cache.operation"),
            introspection=not settings.production,
        )

    persisted = PersistedQueries(
        lambda: state["cache"],
        max_kept=settings.persisted_queries_max,
        max_bytes=settings.persisted_queries_max_bytes,
        safelist=(
            load_safelist(settings.persisted_queries_file)
            if settings.persisted_queries == "safelist" and settings.persisted_queries_file
            else None
        ),
    )
    limits = settings.limits
    endpoint = graphql_endpoint(
        build_schema(limits, hide_suggestions=settings.production),
        context_for,
        persisted,
        graphiql=not settings.production,
        max_document_bytes=limits.max_document_bytes,
    )
    app.add_route("/graphql", endpoint, methods=["GET", "POST"])

    @app.get("/health")
    async def health(request: Request) -> Response:
        current = state["cache"]
        body: dict[str, Any] = {
            "status": "ok",
            "database": "ok",
            "redis_cache": await current.status() if current is not None else "disabled",
        }
        if current is not None and current.enabled and current.backend is not None:
            # Connected is not enough: whether this process reads Redis right now.
            body["redis_trusted"] = current.trust.trusted()
        # Where Redis is (addresses, the Sentinel service) is the operators' business: in
        # production, only for the admin's token.
        shown = not settings.production or tokens.grants(
            Role.ADMIN, request.headers.get("authorization")
        )
        if shown and current is not None and current.backend is not None:
            body.update(await current.backend.describe())
        try:
            await database.ping()
        except Exception:  # any failure to answer is "down", never a 500
            logger.warning("health check: database unreachable", exc_info=True)
            body.update(status="degraded", database="unreachable")
            return json_response(body, 503)
        return json_response(body)

    @app.get("/api/cache/stats")
    async def cache_stats(request: Request) -> Response:
        stats = await cache_stats_dict(state["cache"])
        if not tokens.grants(Role.ADMIN, request.headers.get("authorization")):
            del stats["invalidations"]  # counts are public; the tags name what changed
        return json_response(stats)

    @app.post("/api/cache/clear")
    async def cache_clear(request: Request, pattern: str | None = None) -> Response:
        try:
            tokens.require(Role.ADMIN, request.headers.get("authorization"))
            result = await clear_cache(state["cache"], pattern)
        except ApiError as exc:
            return json_response(http_error(exc), exc.status)
        except ResolverError as exc:
            return json_response(
                {"errors": [{"message": exc.message, "extensions": exc.extensions}]}, 400
            )
        return json_response({"cleared": result.cleared, "families": result.families})

    @app.get("/api/metrics")
    async def metrics() -> Response:
        """Counters of this process, for benchmarks and dashboards."""
        return json_response({"database_queries": database.queries})

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus text format: every worker of this server (see graph/metrics.py)."""
        return Response(observe.exposition(), media_type=CONTENT_TYPE)

    outer: ASGIApp = app
    if settings.cache_operations:
        # Whole-operation hits are answered here, before FastAPI routing.
        outer = OperationCache(
            app,
            lambda: state["cache"],
            path="/graphql",
            vary=response_variant,
            debug=lambda scope: debug(Headers(scope=scope)),
            node=settings.cache_node_header,
            refresh=settings.cache_refresh_entries,
        )
    if settings.allowed_origins:
        outer = CORSMiddleware(
            outer,
            allow_origins=settings.allowed_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    # Outermost: no layer inside holds more of a body than the limit; every answer, the
    # body limit's included, says nosniff.
    # Outside everything: whole-operation hits and refusals of the body limit are counted.
    observe = Observe(
        SecurityHeaders(BodyLimit(outer, settings.max_body_bytes)),
        database,
        routes=[getattr(route, "path", "") for route in app.routes],
        log=settings.access_log,
        max_operations=settings.metrics_max_operations,
        # The dashboard's own operation (graph/static/api.js) is labelled whoever came first.
        reserved_operations=[DASHBOARD_OPERATION],
        multiprocess_dir=multiprocess_dir,
        cache_metrics=cache_metrics,
    )
    return observe
