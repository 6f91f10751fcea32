"""HTTP for answers from the whole-operation cache: the request body buffered and replayed,
Cache-Control, Age, ETag, Vary, and 304 for a matching If-None-Match.

An answer's media type is negotiated from the Accept header: every cacheable answer says
`Vary: Accept`, and its ETag is of the media type and the body, so a shared cache never
serves one media type to a client that asked for the other, nor revalidates one with the
other's tag."""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping
from typing import Any

from cache.local import LocalEntry


def header(scope: MutableMapping[str, Any], name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def etag_of(body: bytes, media: str) -> bytes:
    digest = hashlib.blake2b(media.encode(), digest_size=12)
    digest.update(b"\n")
    digest.update(body)
    return b'"' + digest.hexdigest().encode() + b'"'


def matches(condition: bytes, tag: bytes) -> bool:
    """Whether If-None-Match `condition` matches the current answer's `tag` (RFC 9110 13.1.2:
    `*` matches any answer, and a list by weak comparison)."""
    if condition.strip() == b"*":
        return True
    return any(_opaque(part) == _opaque(tag) for part in condition.split(b","))


def _opaque(tag: bytes) -> bytes:
    tag = tag.strip()
    return tag[2:] if tag.startswith(b"W/") else tag


def raw_accept(scope: MutableMapping[str, Any]) -> str | None:
    return (header(scope, b"accept") or b"").decode("latin-1")


def directives(private: bool, swr: int) -> str:
    """What follows max-age in Cache-Control."""
    visibility = "private" if private else "public"
    return f"{visibility}, stale-while-revalidate={swr}" if swr > 0 else visibility


async def buffer(receive: Any) -> tuple[bytes, Any]:
    """The whole request body, and a receive that replays it to the app."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> dict[str, Any]:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        message: dict[str, Any] = await receive()
        return message

    return body, replay


async def respond(
    scope: MutableMapping[str, Any],
    send: Any,
    entry: LocalEntry,
    now: float,
    status_text: str,
    extra: list[tuple[bytes, bytes]],
    status: int = 200,
) -> None:
    age = max(0, int(now - entry.created))
    left = max(0, int(entry.expires - now))
    media, visibility = entry.meta
    tag = entry.etag or etag_of(entry.value, media)
    headers = [
        (b"cache-control", f"max-age={left}, {visibility}".encode()),
        (b"age", str(age).encode()),
        (b"etag", tag),
        (b"vary", b"accept"),
        (b"x-cache", status_text.encode()),
        *extra,
    ]
    condition = header(scope, b"if-none-match")
    if condition is not None and matches(condition, tag):
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    headers += [
        (b"content-type", media.encode()),
        (b"content-length", str(len(entry.value)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": entry.value})
