"""The body limit: 413 before a body over MAX_BODY_BYTES is read (declared) or as soon as it
passes the limit (chunked), and a server's memory that does not grow with what is sent."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import secrets
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from cache import Cache, MemoryBackend
from graph.app import create_app
from graph.http import LARGE_BODY, loads
from graph.settings import Settings
from resolvers.store import Database
from tests.conftest import CRAWLER, REDIS_URL
from tests.servers import Server, base_env
from tests.test_ingest import INGEST, crawled

LIMIT = 4096
QUERY = orjson.dumps({"query": "{ stats { totalThreats } }"})


def app_with(sqlite_db: Database, operations: bool, **settings: Any) -> Any:
    options = {"MAX_BODY_BYTES": LIMIT, "CACHE_OPERATIONS": operations, **settings}
    # With the whole-operation cache on, it is the one that reads the body (to key it).
    cache = Cache(MemoryBackend(100), namespace="b", schema_version="t") if operations else None
    return create_app(Settings(DATABASE_URL=sqlite_db.url, **options), db=sqlite_db, cache=cache)


class Call:
    """One ASGI request by hand: a body fed chunk by chunk, and what was sent back."""

    def __init__(self, chunks: int, chunk: bytes, declared: int | None = None) -> None:
        self.left = chunks
        self.chunk = chunk
        self.read = 0
        self.messages: list[dict[str, Any]] = []
        headers = [(b"content-type", b"application/json"), (b"host", b"t")]
        if declared is not None:
            headers.append((b"content-length", str(declared).encode()))
        else:
            headers.append((b"transfer-encoding", b"chunked"))
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/graphql",
            "raw_path": b"/graphql",
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": ("t", 80),
        }

    async def receive(self) -> dict[str, Any]:
        if self.left == 0:
            await asyncio.sleep(3600)  # a client that sends nothing more
        self.left -= 1
        self.read += len(self.chunk)
        return {"type": "http.request", "body": self.chunk, "more_body": self.left > 0}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    async def run(self, app: Any) -> tuple[int, dict[str, Any]]:
        await asyncio.wait_for(app(self.scope, self.receive, self.send), 10)
        start, body = self.messages[0], self.messages[1]
        assert len(self.messages) == 2, self.messages
        return start["status"], orjson.loads(body["body"])


@pytest.mark.parametrize("operations", [True, False], ids=["operation-cache", "no-operation-cache"])
async def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(
    sqlite_db: Database, operations: bool
) -> None:
    call = Call(chunks=10**6, chunk=b" " * 1024, declared=100 * 2**20)
    status, body = await call.run(app_with(sqlite_db, operations))
    assert status == 413
    assert body["errors"][0]["extensions"] == {"code": "PAYLOAD_TOO_LARGE"}
    assert call.read == 0


@pytest.mark.parametrize("operations", [True, False], ids=["operation-cache", "no-operation-cache"])
async def test_a_chunked_body_is_read_only_until_it_passes_the_limit(
    sqlite_db: Database, operations: bool
) -> None:
    call = Call(chunks=10**6, chunk=b" " * 1000)  # 1 GB, if anybody read it all
    status, body = await call.run(app_with(sqlite_db, operations))
    assert status == 413
    assert body["errors"][0]["extensions"] == {"code": "PAYLOAD_TOO_LARGE"}
    assert call.read == 5000  # the fifth chunk passed 4096 bytes
    headers = dict(call.messages[0]["headers"])
    assert headers[b"connection"] == b"close"


async def test_a_body_of_exactly_the_limit_is_answered(sqlite_db: Database) -> None:
    body = QUERY + b" " * (LIMIT - len(QUERY))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app_with(sqlite_db, True)), base_url="http://t"
    ) as http:
        ok = await http.post("/graphql", content=body, headers={"content-type": "application/json"})
        over = await http.post(
            "/graphql", content=body + b" ", headers={"content-type": "application/json"}
        )
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"data": {"stats": {"totalThreats": 0}}}
    assert over.status_code == 413
    assert over.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


async def call_with(app: Any, body: bytes) -> tuple[int, dict[str, Any]]:
    """POST `body` to the ASGI app in 64 KiB messages, as a server hands it over."""
    pieces = [body[i : i + 2**16] for i in range(0, len(body), 2**16)]
    call = Call(chunks=len(pieces), chunk=b"", declared=len(body))

    async def receive() -> dict[str, Any]:
        piece = pieces.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    call.receive = receive  # type: ignore[method-assign]
    return await call.run(app)


@pytest.mark.parametrize("operations", [True, False], ids=["operation-cache", "no-operation-cache"])
async def test_a_large_body_under_the_limit_costs_a_few_times_its_size(
    sqlite_db: Database, operations: bool
) -> None:
    body = orjson.dumps({"query": '{ threats(filter: {search: "' + "x" * 9_000_000})
    app = app_with(sqlite_db, operations, MAX_BODY_BYTES=10 * 2**20)
    await call_with(app, body)  # the code paths warmed
    tracemalloc.start()
    try:
        status, answer = await call_with(app, body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"peak {peak / 2**20:.1f} MiB for a {len(body) / 2**20:.1f} MiB body")
    assert (status, answer["errors"][0]["extensions"]["code"]) == (200, "QUERY_TOO_LARGE")
    assert peak < 5 * len(body), f"{peak / 2**20:.0f} MiB for a {len(body) / 2**20:.0f} MiB body"


async def test_a_refused_large_document_is_freed_as_soon_as_it_is_answered(
    sqlite_db: Database,
) -> None:
    body = orjson.dumps({"query": '{ threats(filter: {search: "' + "x" * 9_000_000})
    app = app_with(sqlite_db, False, MAX_BODY_BYTES=10 * 2**20)
    await call_with(app, body)  # the code paths warmed
    gc.collect()
    gc.disable()  # what is kept until the next collection shows
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        status, _ = await call_with(app, body)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gc.enable()
    assert status == 200
    assert after - before < 2**20, f"{(after - before) / 2**20:.0f} MiB kept"


PADDING = " " * LARGE_BODY  # JSON whitespace: what follows is parsed as a large body


@pytest.mark.parametrize(
    "body",
    [
        b'{"query": "{ stats { totalThreats } }", "variables": {"x": NaN}}',
        b'{"query": "{ stats { totalThreats } }", "variables": {"x": -Infinity}}',
        b'{"query": "{ stats { totalThreats } }", "variables": {"x": "\\ud800"}}',
        b'{"query": "{ stats { totalThreats } }", "variables": {"x": "\xff"}}',
        b'{"query": "{ stats { totalThreats } }", "variables": ' + b"[" * 100_000,
        '{"query": "{ stats { totalThreats } }"}'.encode("utf-16"),
    ],
    ids=["NaN", "Infinity", "a lone surrogate", "not UTF-8", "100,000 deep", "UTF-16"],
)
async def test_a_large_body_is_held_to_the_json_rules_of_a_small_one(
    sqlite_db: Database, body: bytes
) -> None:
    app = app_with(sqlite_db, False, MAX_BODY_BYTES=10 * 2**20)
    large = (
        body.replace(b"{", b"{" + PADDING.encode(), 1)
        if body[:1] == b"{"
        else body + PADDING.encode()
    )
    for sent in (body, large):
        status, answer = await call_with(app, sent)
        assert status == 400, (len(sent), answer)
        assert answer["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_a_large_body_means_what_a_small_one_does(sqlite_db: Database) -> None:
    app = app_with(sqlite_db, False, MAX_BODY_BYTES=10 * 2**20)
    # As JSON text: the search is an emoji and an accented letter, both escaped.
    query = r"{ threats(filter: {search: \"\ud83d\ude00 caf\u00e9\"}) { total } }"
    small = ('{"query": "' + query + '"}').encode()
    large = ('{"query": "' + query + '", "variables": {}' + PADDING + "}").encode()
    assert len(large) > LARGE_BODY
    answers = [await call_with(app, body) for body in (small, large)]
    assert answers[0] == answers[1] == (200, {"data": {"threats": {"total": 0}}})


@pytest.mark.parametrize(
    "text",
    [
        r'{"s": "caf\u00e9 \u4e2d \n\t\"\\\/ é 中 😀", "n": [0, -1, 1.5, 2e10, 12345678901234567890]}',
        r'{"s": "\ud83d\ude00", "t": null, "f": false, "o": {"a": {"b": []}}}',
        r'{"dup": 1, "dup": 2}',
    ],
    ids=["escapes and numbers", "a surrogate pair", "a repeated key"],
)
def test_a_large_body_parses_to_what_orjson_gives(text: str) -> None:
    large = text.replace("{", "{" + PADDING, 1).encode()
    assert len(large) > LARGE_BODY
    assert loads(large) == orjson.loads(text)


async def test_the_default_limit_passes_a_crawler_batch_with_long_descriptions(
    client: httpx.AsyncClient,
) -> None:
    description = ("A heap buffer overflow in the TLS handshake parser. " * 80)[:4000]
    threats = [
        crawled(
            n,
            description=description,
            indicators=[
                {"kind": "URL", "value": f"https://x{n}-{i}.example/p.bin"} for i in range(10)
            ],
        )
        for n in range(1000)
    ]
    body = orjson.dumps({"query": INGEST, "variables": {"threats": threats}})
    assert 4.5 * 2**20 < len(body) < Settings().max_body_bytes / 2
    response = await client.post(
        "/graphql",
        content=body,
        headers={"content-type": "application/json", "authorization": f"Bearer {CRAWLER}"},
    )
    assert response.json()["data"]["ingestThreats"]["inserted"] == 1000, response.text[:300]
    over = await client.post("/graphql", content=b" " * (Settings().max_body_bytes + 1))
    assert over.status_code == 413


# -- a real server: its memory while 100 MB bodies are sent ----------------------------------


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM): growth anywhere in between shows."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


async def send_large(port: int, size: int, *, chunked: bool, expect: bool = False) -> bytes:
    """POST `size` bytes in 1 MiB pieces, stopping when the server answers or hangs up;
    returns the status line (empty if the connection was reset before one was read). With
    `expect`, the body waits for `100 Continue` as curl's does, so an early answer is seen."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    if expect:
        framing += "\r\nExpect: 100-continue"
    writer.write(
        f"POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode()
    )
    try:
        if expect:
            interim = await asyncio.wait_for(reader.readline(), 10)
            if not interim.startswith(b"HTTP/1.1 100"):
                return interim  # answered before a byte of the body was sent
            await reader.readline()
        answer = asyncio.ensure_future(reader.readline())
        piece = b" " * 2**20
        sent = 0
        with contextlib.suppress(ConnectionError):
            while sent < size and not answer.done():
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                await writer.drain()
                sent += len(piece)
            if chunked and not answer.done():
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        return await asyncio.wait_for(answer, 60)
    except (ConnectionError, asyncio.IncompleteReadError):
        return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    env = base_env(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'vajra.db'}",
        REDIS_URL=REDIS_URL,
        CACHE_NAMESPACE="body-" + secrets.token_hex(4),
    )
    server = Server("body", env, tmp_path)
    async with server.running():
        yield server


async def test_a_100_mb_body_does_not_grow_the_server(server: Server) -> None:
    assert server.process is not None
    pid = server.process.pid
    async with httpx.AsyncClient(base_url=server.url) as http:
        for _ in range(3):  # the code paths a request takes, warmed
            assert (await http.post("/graphql", content=QUERY)).status_code == 200
    before = peak_rss_mb(pid)
    early = await send_large(server.port, 100 * 2**20, chunked=False, expect=True)
    declared = await send_large(server.port, 100 * 2**20, chunked=False)
    chunked = await send_large(server.port, 100 * 2**20, chunked=True)
    after = peak_rss_mb(pid)
    print(f"peak RSS before {before:.0f} MB, after 100 MB bodies {after:.0f} MB")
    assert early == b"HTTP/1.1 413 Request Entity Too Large\r\n", early
    # The server hangs up after its 413; a client still sending may see the reset first.
    for status in (declared, chunked):
        assert status in (b"", b"HTTP/1.1 413 Request Entity Too Large\r\n"), status
    assert after - before < 30, f"peak RSS {before:.0f} MB -> {after:.0f} MB"
