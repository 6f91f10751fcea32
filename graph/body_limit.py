"""The request body limit, applied while the body streams in.

It is the outermost layer: the whole-operation cache buffers a body to key it, Starlette
buffers one to parse it, and neither may ever hold more than the limit. A declared
`Content-Length` over the limit is answered before a byte of the body is read; a chunked body
is read only up to the chunk that passes it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.errors import ApiError, http_error
from graph.http import negotiate


class _PayloadTooLarge(ApiError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413


class _Exceeded(Exception):
    """Raised into the app by `receive` at the chunk that passes the limit."""


def _framing(scope: MutableMapping[str, Any]) -> tuple[int | None, bool]:
    """The declared length, and whether the body may be longer than declared: chunked, or
    HTTP/2 and later without a declared length (their bodies need no header to exist)."""
    declared, chunked = None, False
    for name, value in scope["headers"]:
        if name == b"content-length":
            # The server has refused a malformed one; anything else is not ours to judge.
            declared = int(value) if value.isdigit() else None
        elif name == b"transfer-encoding":
            chunked = True
    http1 = scope.get("http_version", "1.1").startswith("1.")
    return declared, chunked or (not http1 and declared is None)


class BodyLimit:
    """ASGI middleware: 413, in the API's error shape, for a body larger than `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        error = _PayloadTooLarge(f"the request body is larger than {max_bytes:,} bytes")
        self._body = orjson.dumps(http_error(error))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, unbounded = _framing(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, send)
            return
        if not unbounded:
            # The server delivers no more than the declared length (none: an empty body).
            await self.app(scope, receive, send)
            return
        received = 0
        exceeded = False
        started = False

        async def limited() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _Exceeded
            return message

        async def unless_exceeded(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # whatever the app makes of the exception (a 500), ours replaces it
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, unless_exceeded)
        except Exception:
            if not exceeded or started:
                raise
        if exceeded and not started:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        # Closing the connection stops a client from sending the rest of a body nobody reads.
        media_type = negotiate(Headers(scope=scope).get("accept", ""))
        headers = [
            (b"content-type", media_type.encode()),
            (b"content-length", str(len(self._body)).encode()),
            (b"cache-control", b"no-store"),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": self._body})
