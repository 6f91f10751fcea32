"""uvicorn's HTTP protocol (httptools), with its own refusals in the API's error shape.

uvicorn answers a request it cannot parse (a request line or headers past llhttp's limits,
such as a URL of ~70 KB or more, or bytes that are not HTTP) by itself, before the app sees
anything, in plain text. This keeps its behaviour and changes only the body."""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from graph.errors import status_error

MESSAGE = "the request line or headers are malformed or too large"


class ApiHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        body = orjson.dumps(status_error(400, MESSAGE))
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
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
        self.transport.write(b"".join(content))
        self.transport.close()
