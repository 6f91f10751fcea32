"""References for the operation cache: the same response bytes from a bare ASGI callable and
from a bare FastAPI route. The bytes are read from the file named by BENCH_BODY."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.responses import Response

BODY = Path(os.environ.get("BENCH_BODY", "/dev/null")).read_bytes()
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def bare_asgi() -> Any:
    return bare


def bare_fastapi() -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> Response:
        return Response(b"{}", media_type="application/json")

    @app.post("/graphql")
    async def graphql() -> Response:
        return Response(BODY, media_type="application/json")

    return app
