"""The `ingestThreats` mutation over HTTP, and the retry policy of every request we make.

Retried, with exponential backoff and jitter: connection errors, timeouts and 5xx answers,
and GraphQL errors that are the server's fault (INTERNAL_SERVER_ERROR). Never retried: 4xx
and GraphQL errors that are ours (BAD_USER_INPUT, UNAUTHENTICATED, FORBIDDEN...). A retry is
safe because the mutation is an upsert by (source, externalId); a batch that did commit
before its answer was lost comes back as `unchanged`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from crawler.errors import AuthRefused, Refused, Unreachable

INGEST = """mutation Crawl($threats: [ThreatInput!]!) {
  ingestThreats(threats: $threats) { inserted updated unchanged }
}"""
_SERVER_FAULTS = {"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE"}
_AUTH = {"UNAUTHENTICATED", "FORBIDDEN"}


@dataclass(frozen=True, slots=True)
class Retry:
    """`attempts` tries in all; waits of base, 2 x base, 4 x base... capped, with jitter."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 10.0

    def delay(self, attempt: int) -> float:
        wait: float = min(self.cap, self.base * 2**attempt)
        return wait / 2 + random.uniform(0, wait / 2)


class _Transient(Exception):
    """One failed try that another try may fix."""


@dataclass(frozen=True, slots=True)
class Counts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


class Client:
    """Requests to one Vajra server (and feeds by URL), each with the retry policy."""

    def __init__(
        self,
        server: str,
        token: str | None,
        *,
        retry: Retry | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 60.0,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.endpoint = server.rstrip("/") + "/graphql"
        self.retry = retry or Retry()
        self.sleep = sleep
        # Only the API gets the token: a feed's host never sees it.
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(transport=transport, timeout=timeout, follow_redirects=True)
        self.retries = 0  # retries made, over every request
        self.on_retry = on_retry  # told why, before each wait

    def close(self) -> None:
        self.http.close()

    def _with_retries(self, what: str, attempt_once: Callable[[], Any]) -> Any:
        last = ""
        for attempt in range(self.retry.attempts):
            if attempt:
                self.retries += 1
                wait = self.retry.delay(attempt - 1)
                if self.on_retry:
                    self.on_retry(
                        f"{what}: {last}; try {attempt + 1} of {self.retry.attempts} in {wait:.1f} s"
                    )
                self.sleep(wait)
            try:
                return attempt_once()
            except _Transient as exc:
                last = str(exc)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise Unreachable(f"{what}: gave up after {self.retry.attempts} tries; last: {last}")

    def fetch(self, url: str) -> bytes:
        """The body of a feed by URL."""

        def once() -> bytes:
            response = self.http.get(url)
            status = response.status_code
            if status >= 500:
                raise _Transient(f"HTTP {status}")
            if status >= 400:
                raise Refused(f"GET {url}: HTTP {status}", status=status)
            return response.content

        result: bytes = self._with_retries(f"GET {url}", once)
        return result

    def ingest(self, threats: list[dict[str, Any]]) -> Counts:
        """One `ingestThreats` call; `Refused` carries the server's problems, if any."""

        def once() -> Counts:
            body = {"query": INGEST, "variables": {"threats": threats}}
            response = self.http.post(self.endpoint, json=body, headers=self.auth)
            return _answer(response)

        result: Counts = self._with_retries(f"POST {self.endpoint}", once)
        return result


def _errors(response: httpx.Response) -> tuple[Any, list[dict[str, Any]]]:
    try:
        body = response.json()
    except ValueError:
        return None, []
    if not isinstance(body, dict):
        return None, []
    errors = body.get("errors")
    return body.get("data"), errors if isinstance(errors, list) else []


def _answer(response: httpx.Response) -> Counts:
    status = response.status_code
    data, errors = _errors(response)
    message = "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))
    codes = {
        str((e.get("extensions") or {}).get("code", "")) for e in errors if isinstance(e, dict)
    }
    if status >= 500:
        raise _Transient(f"HTTP {status}" + (f": {message}" if message else ""))
    if status in (401, 403) or codes & _AUTH:
        raise AuthRefused(
            f"the server refused the token (HTTP {status}): {message or 'no reason'}",
            status=status,
        )
    if status >= 400 or (errors and not codes & _SERVER_FAULTS):
        problems = [p for e in errors for p in (e.get("extensions") or {}).get("problems") or []]
        raise Refused(f"HTTP {status}: {message or response.reason_phrase}", problems, status)
    if errors:
        raise _Transient(f"the server failed: {message}")
    try:
        counts = data["ingestThreats"]
        return Counts(int(counts["inserted"]), int(counts["updated"]), int(counts["unchanged"]))
    except (TypeError, KeyError, ValueError):
        raise _Transient(f"HTTP {status}: not an ingestThreats answer") from None
