"""The HTTP server's own limits (graph/protocol.py), against a real `vajra serve` over raw
sockets: a request's head is bounded in size and time, a body may not stall, connections are
bounded, and what it refuses is in the API's shape."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from tests.servers import Server, base_env
from tests.test_body_limit import peak_rss_mb

TIMEOUT = 1  # REQUEST_HEADER_TIMEOUT and REQUEST_BODY_TIMEOUT of the tests' server


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, **env: str) -> AsyncIterator[Server]:
    database = f"sqlite+aiosqlite:///{tmp_path / 'v.db'}"
    server = Server(
        "proto", base_env(DATABASE_URL=database, CACHE_ENABLED="false", **env), tmp_path
    )
    async with server.running():
        yield server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    timeouts = {"REQUEST_HEADER_TIMEOUT": str(TIMEOUT), "REQUEST_BODY_TIMEOUT": str(TIMEOUT)}
    async with serving(tmp_path, **timeouts) as server:
        yield server


async def exchange(port: int, *pieces: bytes, pause: float = 0.0) -> tuple[float, bytes]:
    """Send the pieces (`pause` seconds apart) while the server listens, and read until it
    closes; returns the seconds from the first byte to the close, and what was read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    answer = asyncio.ensure_future(asyncio.wait_for(reader.read(), 10))
    try:
        with contextlib.suppress(ConnectionError):
            for piece in pieces:
                if answer.done():
                    break
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(pause)
        try:
            read = await answer
        except ConnectionError:
            read = b""
        return time.monotonic() - started, read
    finally:
        writer.close()


def refusal(answer: bytes, status: int, code: str) -> None:
    """One answer of `status`, in the API's shape, with nosniff, closing the connection."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    assert lines[0].startswith(b"http/1.1 %d" % status), answer[:300]
    assert b"content-type: application/json" in lines
    assert b"x-content-type-options: nosniff" in lines
    assert b"connection: close" in lines
    assert orjson.loads(body)["errors"][0]["extensions"]["code"] == code


async def send_header(port: int, size: int) -> tuple[bytes, int]:
    """A request whose one header is `size` bytes, sent 1 MiB at a time until the server
    answers or hangs up; returns its first line (empty if reset first) and the bytes sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: ")
    answer = asyncio.ensure_future(reader.readline())
    piece = b"a" * 2**20
    sent = 0
    try:
        with contextlib.suppress(ConnectionError):
            while sent < size and not answer.done():
                writer.write(piece)
                await writer.drain()
                sent += len(piece)
            if not answer.done():
                writer.write(b"\r\nConnection: close\r\n\r\n")
                await writer.drain()
        try:
            return await asyncio.wait_for(answer, 60), sent
        except (ConnectionError, asyncio.IncompleteReadError):
            return b"", sent
    finally:
        writer.close()


async def health_seconds(port: int) -> float:
    seconds, answer = await exchange(
        port, b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    return seconds


async def test_a_100_mb_header_is_refused_unread_and_nobody_waits(server: Server) -> None:
    assert server.process is not None
    for _ in range(3):  # the code paths a request takes, warmed
        await health_seconds(server.port)
    before = peak_rss_mb(server.process.pid)
    attack = asyncio.ensure_future(send_header(server.port, 100 * 2**20))
    slowest = 0.0
    while not attack.done():  # and once after it
        slowest = max(slowest, await health_seconds(server.port))
    slowest = max(slowest, await health_seconds(server.port))
    status, sent = await attack
    after = peak_rss_mb(server.process.pid)
    print(
        f"sent {sent / 2**20:.0f} MiB; /health at worst {slowest:.2f} s; peak RSS +{after - before:.0f} MB"
    )
    # The server hangs up after its 431; a client still sending may see the reset first.
    assert status in (b"", b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), status
    assert sent < 100 * 2**20, "the whole header was read"
    assert after - before < 30, f"peak RSS {before:.0f} MB -> {after:.0f} MB"
    assert slowest < 2, f"/health took {slowest:.2f} s meanwhile"


async def test_a_head_over_the_limit_is_answered_431_and_a_request_line_414(server: Server) -> None:
    _, headers = await exchange(
        server.port, b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: " + b"a" * 70_000 + b"\r\n\r\n"
    )
    refusal(headers, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE")
    _, line = await exchange(
        server.port, b"GET /health?" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    refusal(line, 414, "URI_TOO_LONG")


async def test_a_head_under_the_limit_is_answered_kept_alive_and_pipelined(server: Server) -> None:
    big = b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: " + b"a" * 60_000 + b"\r\n\r\n"
    small = b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    # Two heads of 60 KB in one write, then a third: each is counted on its own.
    _, answer = await exchange(server.port, big + big, small)
    assert answer.count(b"HTTP/1.1 200 OK") == 3, answer[:500]


@pytest.mark.parametrize("drip", [False, True], ids=["partial", "dripped"])
async def test_a_head_not_complete_within_the_timeout_is_answered_408(
    server: Server, drip: bool
) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    if drip:  # a byte every 0.1 s: never idle, never done
        seconds, answer = await exchange(server.port, *(bytes([b]) for b in head), pause=0.1)
    else:
        seconds, answer = await exchange(server.port, head)
    refusal(answer, 408, "REQUEST_TIMEOUT")
    assert seconds < TIMEOUT + 3, seconds


async def test_a_body_that_stops_arriving_is_answered_408(server: Server) -> None:
    head = b"POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    seconds, answer = await exchange(server.port, head, b'{"query": ', pause=0.2)
    refusal(answer, 408, "REQUEST_TIMEOUT")
    assert TIMEOUT <= seconds < TIMEOUT + 3, seconds


async def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    seconds, answer = await exchange(server.port)
    assert answer == b""
    assert seconds < TIMEOUT + 3, seconds


async def test_a_websocket_upgrade_is_answered_as_http_in_the_api_shape(server: Server) -> None:
    upgrade = (
        b"GET /graphql HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    _, answer = await exchange(server.port, upgrade + b"\x81\x05hello")
    refusal(answer, 400, "BAD_REQUEST")


async def test_past_max_connections_the_answer_is_503_in_the_api_shape(tmp_path: Path) -> None:
    async with serving(tmp_path, MAX_CONNECTIONS="2") as server:
        idle = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            _, answer = await exchange(server.port, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        finally:
            idle[1].close()
        refusal(answer, 503, "SERVICE_UNAVAILABLE")
