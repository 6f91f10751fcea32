"""`vajra crawl`: options, the progress bar and the summary. Feed text is shown as text:
never as rich markup, and with control characters escaped."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from crawler.client import Client, Retry
from crawler.errors import CrawlerError
from crawler.run import FORMATS, Summary, load, prepare, send
from crawler.threat import Rejection

TOKEN_VARIABLE = "VAJRA_CRAWLER_TOKEN"
EXIT_CODES = """exit codes: 0 every record sent and taken; 1 some records rejected (listed);
2 the feed cannot be read or is not the format; 3 the server was unreachable after the
retries, or refused the token"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("feed", metavar="FILE|URL", help="the feed: a JSON file or an http(s) URL")
    parser.add_argument(
        "--format", required=True, choices=sorted(FORMATS), help="the feed's format"
    )
    parser.add_argument(
        "--server", default="http://127.0.0.1:8000", help="the Vajra API (default: %(default)s)"
    )
    parser.add_argument("--token", help=f"the crawler's bearer token (default: ${TOKEN_VARIABLE})")
    parser.add_argument(
        "--source", help="the threats' source (default: cisa-kev, nvd or stix by format)"
    )
    parser.add_argument(
        "--retries", type=int, default=4, help="retries of a request that failed (default: 4)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no retry notes")


def printable(value: str) -> str:
    """Feed text made safe for a terminal: control characters as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


def _bar(console: Console) -> Progress:
    return Progress(
        "sending",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _lines(title: str, items: list[Rejection]) -> list[str]:
    return [f"{title}:"] + [f"  {printable(i.record)}: {printable(i.reason)}" for i in items]


def report(summary: Summary) -> str:
    """The summary, as plain text."""
    lines = [
        f"read {summary.read:,} record(s): inserted {summary.inserted:,}, "
        f"updated {summary.updated:,}, unchanged {summary.unchanged:,}, "
        f"rejected {len(summary.rejected):,}, skipped {len(summary.skipped):,}"
        + (f", not sent {summary.unsent:,}" if summary.unsent else "")
    ]
    if summary.skipped:
        why = Counter(s.reason for s in summary.skipped)
        lines.append("skipped: " + ", ".join(f"{printable(r)} ({n})" for r, n in why.most_common()))
    if summary.rejected:
        lines += _lines("rejected", summary.rejected)
    if summary.error is not None:
        lines.append(f"error: {printable(summary.error.message)}")
    return "\n".join(lines)


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Crawl as the options say; the exit code."""
    token = args.token or os.environ.get(TOKEN_VARIABLE)
    console = Console(file=err, markup=False, highlight=False, emoji=False)
    client = Client(
        args.server,
        token,
        retry=Retry(attempts=max(args.retries, 0) + 1),
        on_retry=None
        if args.quiet
        else lambda note: console.print(printable(note), soft_wrap=True),
    )
    try:
        try:
            threats, summary = prepare(load(args.feed, client), args.format, args.source)
        except CrawlerError as exc:
            print(f"vajra crawl: {printable(exc.message)}", file=err)
            return exc.exit_code
        if args.quiet or not err.isatty():
            send(threats, client, summary)
        else:
            with _bar(console) as bar:
                task = bar.add_task("sending", total=len(threats))
                send(threats, client, summary, progress=lambda n: bar.advance(task, n))
    finally:
        client.close()
    print(report(summary), file=out)
    return summary.exit_code
