"""One crawl: read the feed, map it, screen it, send it in batches, and count what happened."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crawler import kev, nvd, stix
from crawler.checks import screen
from crawler.client import Client
from crawler.errors import AuthRefused, CrawlerError, DeliveryError, FeedError, Refused
from crawler.threat import Parsed, Rejection, Threat

FORMATS: dict[str, Callable[[Any, str], Parsed]] = {
    "kev": kev.parse,
    "nvd": nvd.parse,
    "stix": stix.parse,
}
DEFAULT_SOURCES = {"kev": kev.SOURCE, "nvd": nvd.SOURCE, "stix": stix.SOURCE}
MAX_BATCH = 1_000
_PATH = re.compile(r"threats\[(\d+)\]")

Progress = Callable[[int], None]  # called with how many more threats were settled


@dataclass(slots=True)
class Summary:
    """What a crawl did; `exit_code` is 0, 1 with rejected records, or the error's code."""

    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    skipped: list[Rejection] = field(default_factory=list)
    unsent: int = 0
    error: CrawlerError | None = None

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return self.error.exit_code
        return 1 if self.rejected else 0


def load(location: str, client: Client) -> Any:
    """The feed's JSON, from a file or an http(s) URL."""
    if location.startswith(("http://", "https://")):
        try:
            raw = client.fetch(location)
        except DeliveryError as exc:
            raise FeedError(f"cannot fetch the feed: {exc.message}") from None
    else:
        try:
            raw = Path(location).read_bytes()
        except OSError as exc:
            raise FeedError(f"cannot read {location}: {exc.strerror or exc}") from None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise FeedError(f"{location} is not JSON: {exc}") from None


def batches(threats: list[Threat], size: int = MAX_BATCH) -> list[list[Threat]]:
    """Consecutive batches of at most `size` (the server takes at most 1,000)."""
    return [threats[i : i + size] for i in range(0, len(threats), size)]


def prepare(
    document: Any, fmt: str, source: str | None = None, now: dt.datetime | None = None
) -> tuple[list[Threat], Summary]:
    """The threats to send, and a summary that already holds what was rejected or skipped."""
    parsed = FORMATS[fmt](document, source or DEFAULT_SOURCES[fmt])
    kept, refused = screen(parsed.threats, now or dt.datetime.now(dt.UTC))
    summary = Summary(
        read=len(parsed.threats) + len(parsed.rejected) + len(parsed.skipped),
        rejected=parsed.rejected + refused,
        skipped=parsed.skipped,
    )
    return kept, summary


def send(
    threats: list[Threat],
    client: Client,
    summary: Summary,
    *,
    size: int = MAX_BATCH,
    progress: Progress | None = None,
) -> None:
    """Every batch through `ingestThreats`. A batch refused for some of its records goes again
    without them; one refused with no record named is rejected whole; a body too large is
    halved. An unreachable server or a refused token stops the crawl."""
    work = deque(batches(threats, size))
    while work:
        batch = work.popleft()
        try:
            counts = client.ingest([t.to_input() for t in batch])
        except Refused as exc:
            if isinstance(exc, AuthRefused):
                summary.error = exc
            elif exc.status == 413 and len(batch) > 1:
                half = len(batch) // 2
                work.extendleft([batch[half:], batch[:half]])
                continue
            else:
                bad = _named(exc, batch)
                if bad:
                    summary.rejected += [Rejection(batch[i].external_id, r) for i, r in bad.items()]
                    rest = [t for i, t in enumerate(batch) if i not in bad]
                    if rest:
                        work.appendleft(rest)
                else:
                    reason = f"the server refused its batch of {len(batch)}: {exc.message}"
                    summary.rejected += [Rejection(t.external_id, reason) for t in batch]
                if progress:
                    progress(len(bad) if bad else len(batch))
                continue
        except CrawlerError as exc:
            summary.error = exc
        if summary.error is not None:
            summary.unsent = len(batch) + sum(len(b) for b in work)
            return
        summary.inserted += counts.inserted
        summary.updated += counts.updated
        summary.unchanged += counts.unchanged
        if progress:
            progress(len(batch))


def _named(exc: Refused, batch: list[Threat]) -> dict[int, str]:
    """The records of `batch` the server's problems name, with what it said of each."""
    named: dict[int, str] = {}
    for problem in exc.problems:
        path = str(problem.get("path", ""))
        match = _PATH.match(path)
        if match and int(match.group(1)) < len(batch):
            reason = f"refused by the server: {path[match.end() :].lstrip('.')} {problem.get('message', '')}"
            named.setdefault(int(match.group(1)), reason.replace(":  ", ": "))
    return named
