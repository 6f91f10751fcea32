"""uvicorn's HTTP protocol (httptools), with limits of its own and its refusals in the API's
error shape.

uvicorn answers a request it cannot parse (bytes that are not HTTP, a malformed header) by
itself, before the app sees anything, in plain text; here the body is the API's. llhttp does
not bound a request's head (httptools joins a header's pieces as they come: a 100 MB header
took 11 s of the event loop), nor does uvicorn bound how long a client takes to send one,
so this protocol does:

- the request line and headers are fed to the parser at most MAX_HEADER_BYTES in all; past
  it, 414 (the request line alone) or 431, and the connection is closed unread;
- a head must be complete REQUEST_HEADER_TIMEOUT seconds after its first byte (a new
  connection: after it opens), and a body may not pause longer than REQUEST_BODY_TIMEOUT
  while the server is waiting for it: 408 if nothing was answered yet, else a plain close;
- past MAX_CONNECTIONS (uvicorn's `limit_concurrency`), 503 in the API's shape.

Upgrades (WebSockets) are not served (`ws="none"`): such a request is answered as plain HTTP
and the connection closed after it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from graph.errors import status_error
from graph.settings import get_settings

MALFORMED = "the request line or headers are malformed"
# After a refusal, what the client is still sending is read and dropped for a while (at most
# this long, this much), so that its kernel does not reset the connection, and drop our
# answer, on data we never read.
LINGER_SECONDS = 1.0
LINGER_BYTES = 2**20


def refusal(status: int, message: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP answer, in the API's error shape, after which the connection closes."""
    body = orjson.dumps(status_error(status, message))
    content = [STATUS_LINE[status]]
    for name, value in default_headers:
        content.extend([name, b": ", value, b"\r\n"])
    content.extend(
        [
            b"content-type: application/json\r\n",
            b"x-content-type-options: nosniff\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n",
            b"\r\n",
            body,
        ]
    )
    return b"".join(content)


async def _unavailable(scope: Any, receive: Any, send: Any) -> None:
    """uvicorn's answer past `limit_concurrency`, in the API's shape."""
    body = orjson.dumps(status_error(503, "the server has too many connections; retry later"))
    headers = [
        (b"content-type", b"application/json"),
        (b"x-content-type-options", b"nosniff"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class ApiHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        settings = get_settings()
        self.max_head = settings.max_header_bytes
        self.head_timeout = settings.request_header_timeout
        self.body_timeout = settings.request_body_timeout
        # Checked here (on_headers_complete) so the 503 is ours; uvicorn's check is off.
        self.max_connections = self.limit_concurrency
        self.limit_concurrency = None
        self.head_bytes = 0  # of the head being received; 0: none begun
        self.line_done = False  # its request line has ended
        self.in_head = True  # the next bytes belong to a head (else to a body)
        self.upgraded = False  # an upgrade was asked: later bytes are not HTTP
        self.lingering: int | None = None  # bytes still dropped after a refusal
        self.last_body_read = 0.0
        self.head_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.lingering is not None:
            self.lingering -= len(data)
            if self.lingering < 0:
                self.transport.close()
            return
        if self.upgraded:
            return
        if self.in_head and self.head_bytes + len(data) <= self.max_head:
            # The common read: a whole request (or the start of one) within the limit.
            if not self.line_done and b"\n" in data:
                self.line_done = True
            self.head_bytes += len(data)
            super().data_received(data)
            data = b""
        while data and not (self._finished() or self.upgraded):
            if not self.in_head:
                # A head that begins in this read after a body ends is counted from the next
                # read: it may pass the limit by at most one read (256 KiB), never more.
                self.last_body_read = self.loop.time()
                super().data_received(data)
                break
            room = self.max_head - self.head_bytes
            if room <= 0:
                self._head_too_large()
                return
            # Never more of a head than the limit reaches the parser, whatever arrives.
            piece, data = data[:room], data[room:]
            if not self.line_done and b"\n" in piece:
                self.line_done = True
            self.head_bytes += len(piece)
            super().data_received(piece)
        if self._finished() or self.upgraded:
            return
        if self.in_head:
            if self.head_bytes and self.head_timer is None:
                self.head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)
        elif self.body_timer is None:
            self.body_timer = self.loop.call_later(self.body_timeout, self._body_too_slow)

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, MALFORMED)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.last_body_read = self.loop.time()
        self.head_bytes = 0
        self.line_done = False
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        limit = self.max_connections
        if limit is None or (len(self.connections) < limit and len(self.tasks) < limit):
            super().on_headers_complete()
            return
        self.logger.warning("Exceeded concurrency limit.")
        app, self.app = self.app, _unavailable
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_message_complete(self) -> None:
        self.in_head = True
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
        super().on_message_complete()

    def _unsupported_upgrade_warning(self) -> None:
        # No WebSockets here: the request was answered as plain HTTP, and what follows it on
        # the connection is another protocol's, never parsed.
        self.upgraded = True
        if self.cycle is not None:
            self.cycle.keep_alive = False

    def _head_too_large(self) -> None:
        if self.line_done:
            self._refuse(431, f"the request headers are larger than {self.max_head:,} bytes")
        else:
            self._refuse(414, f"the request line is longer than {self.max_head:,} bytes")

    def _head_too_slow(self) -> None:
        self.head_timer = None
        if self._finished():
            return
        if not self.head_bytes:
            # Nothing of a request yet: an idle connection is closed without an answer
            # (unless it is waiting for ours: the keep-alive timer follows it).
            if self.cycle is None or self.cycle.response_complete:
                self.transport.close()
            return
        self._refuse(408, f"the request headers took over {self.head_timeout:g} s to arrive")

    def _body_too_slow(self) -> None:
        self.body_timer = None
        if self.in_head or self._finished():
            return
        now = self.loop.time()
        cycle = self.cycle
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            self.last_body_read = now  # the client is waiting for us, not we for it
        idle = now - self.last_body_read
        if idle < self.body_timeout:
            self.body_timer = self.loop.call_later(self.body_timeout - idle, self._body_too_slow)
            return
        self._refuse(408, f"the request body paused over {self.body_timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` unless an answer is under way on this connection, and close it."""
        cycle = self.cycle
        current = cycle is not None and not self.in_head  # the cycle is this request's
        if cycle is None or (not current and cycle.response_complete):
            answer = True
        else:
            answer = current and not cycle.response_started
        if cycle is not None and not cycle.response_complete:
            # The app, if it is still running, hears a disconnect and writes nothing more.
            cycle.disconnected = True
            cycle.message_event.set()
        self.logger.info("refused a request: %s %s", status, message)
        self._cancel_timers()
        if not answer:
            self.transport.close()
            return
        self.transport.write(refusal(status, message, self.server_state.default_headers))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.lingering = LINGER_BYTES
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _finished(self) -> bool:
        """Closed, or refused: nothing more is parsed."""
        return self.lingering is not None or self.transport.is_closing()

    def _cancel_timers(self) -> None:
        for timer in (self.head_timer, self.body_timer):
            if timer is not None:
                timer.cancel()
        self.head_timer = self.body_timer = None
