"""The ASGI application: GraphQL at /graphql, health and cache admin under /."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from graph.context import Context, Tokens
from graph.http import graphql_endpoint, json_response
from graph.schema import schema
from graph.settings import Settings, get_settings
from resolvers.store import Database

logger = logging.getLogger("vajra")


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    """Build the app; `db` lets tests hand in a database they own."""
    settings = settings or get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    database = db or Database(settings.database_url)
    tokens = Tokens(crawler=settings.crawler_token, admin=settings.admin_token)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await database.create_schema()
        try:
            yield
        finally:
            if db is None:
                await database.close()

    app = FastAPI(title="Vajra", lifespan=lifespan)
    app.state.db = database

    def context_for(request: Request) -> Context:
        return Context(
            db=database, tokens=tokens, authorization=request.headers.get("authorization")
        )

    app.add_route("/graphql", graphql_endpoint(schema, context_for), methods=["GET", "POST"])

    @app.get("/health")
    async def health() -> Response:
        body: dict[str, Any] = {"status": "ok", "database": "ok"}
        try:
            await database.ping()
        except Exception:  # any failure to answer is "down", never a 500
            logger.warning("health check: database unreachable", exc_info=True)
            body.update(status="degraded", database="unreachable")
            return json_response(body, 503)
        return json_response(body)

    @app.get("/api/metrics")
    async def metrics() -> Response:
        """Counters of this process, for benchmarks and dashboards."""
        return json_response({"database_queries": database.queries})

    return app
