"""The live dashboard's figures: what the server's counters and the records say over each
measured phase, merged per kind of phase, and the markdown report."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.live_load import Ingest, Read, Recorder, operations

SLOW = 0.050  # seconds: a read over this is slow
EXPIRING = "sqlite, short max ages"
LABELS = {"quiet": "no crawler", "crawler": "crawler", "expiring": "entries expiring, no crawler"}


def _refreshes(stats: Any) -> int | None:
    """Entries and whole operations recomputed by refresh on write or on expiry
    (`refresh` in /api/cache/stats), None for a server without the counters."""
    counts = stats.get("refresh") if isinstance(stats, dict) else None
    if not isinstance(counts, dict) or "entries" not in counts:
        return None
    return int(counts["entries"]) + int(counts.get("operations", 0))


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class Snapshot:
    at: float
    cpu: float
    jiffies: tuple[int, int]
    queries: int
    refreshed: int | None
    fields: tuple[int, int, int]  # hits, misses, coalesced of the field tier

    @classmethod
    async def take(cls, port: int) -> Snapshot:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            metrics = (await client.get("/api/metrics")).json()
            stats = (await client.get("/api/cache/stats")).json()
        counts = [c for name, c in stats.get("fields", {}).items() if name != "(operation)"]
        return cls(
            at=time.perf_counter(),
            cpu=time.process_time(),
            jiffies=_machine_jiffies(),
            queries=metrics["database_queries"],
            refreshed=_refreshes(stats),
            fields=(
                sum(c["hits"] for c in counts),
                sum(c["misses"] + c.get("stale", 0) for c in counts),
                sum(c.get("coalesced", 0) for c in counts),
            ),
        )


@dataclass
class Phase:
    kind: str
    before: Snapshot
    after: Snapshot
    reads: list[Read] = field(default_factory=list)
    ingests: list[Ingest] = field(default_factory=list)
    stale: int = 0
    errors: int = 0
    slow_ops: set[int] = field(default_factory=set)

    @property
    def seconds(self) -> float:
        return self.after.at - self.before.at

    def line(self) -> str:
        f = Figures([self])
        return (
            f"{self.kind}: {f.reads} reads, {f.rps:.0f}/s, p99 {f.p(99):.1f} ms, "
            f"p99.9 {f.p(99.9):.1f} ms, hits {f.hit_rate:.2%}, {f.stale} stale, {f.errors} errors"
        )


def summarize(phase: Phase, rec: Recorder) -> None:
    """The reads and ingests that started within the phase."""
    start, end = phase.before.at, phase.after.at
    phase.reads = [r for r in rec.reads if start <= r[0] < end]
    phase.ingests = [i for i in rec.ingests if start <= i.started < end]
    phase.stale = rec.stale(phase.reads)
    phase.errors = sum(r[4] < 0 for r in phase.reads) + sum(not i.ok for i in phase.ingests)
    phase.slow_ops = {r[2] for r in phase.reads if r[1] > SLOW}


@dataclass
class Run:
    """One configuration: its measured phases, and batches sent once the readers stopped."""

    phases: list[Phase]
    idle: list[Ingest]
    base: int  # threats when the readers started


class Figures:
    """The phases of one kind, merged."""

    def __init__(self, phases: list[Phase]) -> None:
        self.phases = phases
        self.latencies = sorted(r[1] for p in phases for r in p.reads)
        self.seconds = sum(p.seconds for p in phases)
        self.reads = len(self.latencies)
        self.stale = sum(p.stale for p in phases)
        self.errors = sum(p.errors for p in phases)
        self.slow = sum(r[1] > SLOW for p in phases for r in p.reads)
        self.slow_ops = set().union(*(p.slow_ops for p in phases))
        batches = [
            (i.started, i.returned + 1.0) for p in phases for i in p.ingests if i.threats > 1
        ]
        self.slow_near_batch = sum(
            r[1] > SLOW and any(a <= r[0] + r[1] and r[0] <= b for a, b in batches)
            for p in phases
            for r in p.reads
        )
        hits = sum(r[3] == "HIT" for p in phases for r in p.reads)
        self.hit_rate = hits / max(self.reads, 1)
        self.rps = self.reads / max(self.seconds, 1e-9)
        delta = [sum(p.after.fields[i] - p.before.fields[i] for p in phases) for i in range(3)]
        self.field_hit_rate = delta[0] / sum(delta) if sum(delta) else None
        queries = sum(p.after.queries - p.before.queries for p in phases)
        self.queries_per_read = queries / max(self.reads, 1)
        self.refreshed: int | None = 0
        for p in phases:
            if p.before.refreshed is None or p.after.refreshed is None:
                self.refreshed = None
            elif self.refreshed is not None:
                self.refreshed += p.after.refreshed - p.before.refreshed
        self.client_cpu = sum(p.after.cpu - p.before.cpu for p in phases) / max(self.seconds, 1e-9)
        busy = sum(p.after.jiffies[0] - p.before.jiffies[0] for p in phases)
        total = sum(p.after.jiffies[1] - p.before.jiffies[1] for p in phases)
        self.machine_busy = busy / max(total, 1)
        ingests = [i for p in phases for i in p.ingests]
        self.singles = [i.seconds for i in ingests if i.threats == 1 and i.ok]
        self.batches = [i.seconds for i in ingests if i.threats > 1 and i.ok]
        self.ingested = sum(i.threats for i in ingests if i.ok)

    def p(self, percentile: float) -> float:
        """Milliseconds."""
        if not self.latencies:
            return float("nan")
        n = len(self.latencies)
        return 1000 * self.latencies[min(n - 1, int(percentile / 100 * n))]

    @property
    def worst_window_p99(self) -> float:
        """The highest p99 of any 1 s window (by start time), in milliseconds."""
        windows: dict[tuple[int, int], list[float]] = {}
        for k, phase in enumerate(self.phases):
            for r in phase.reads:
                windows.setdefault((k, int(r[0] - phase.before.at)), []).append(r[1])
        worst = 0.0
        for values in windows.values():
            if len(values) >= 100:
                values.sort()
                worst = max(worst, values[int(0.99 * len(values))])
        return 1000 * worst


def _batch_rate(seconds: list[float]) -> str:
    if not seconds:
        return "n/a"
    median = statistics.median(seconds)
    return f"{1000 / median:,.0f} threats/s (median {1000 * median:.0f} ms, {len(seconds)} batches)"


def _ms(seconds: list[float]) -> str:
    return f"{1000 * statistics.median(seconds):.1f}" if seconds else "n/a"


def _share(value: float | None) -> str:
    return "n/a (no lookups)" if value is None else f"{value:.2%}"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def report(results: dict[str, Run], args: argparse.Namespace, machine: str) -> list[str]:
    swr_ttl = args.swr_ttl
    ops = operations()
    lines = [
        f"# Live dashboard: readers while the crawler ingests, on {args.threats:,} threats",
        "",
        f"One `vajra serve` process (one worker, default settings, whole-operation cache on) per "
        f"configuration with a redis-server of its own; {args.readers} closed-loop keep-alive "
        "readers (raw asyncio sockets, one client process), every other read the dashboard "
        f"operation, the others one of {len(ops) - 1} filtered lists (5 severities, 8 sources, "
        "4 categories, pages 1-3). The crawler, over HTTP with its token: one threat a second "
        "and a 1,000-threat batch every 10 s (5 s into each phase), each on a fixed schedule. "
        f"Without and with the crawler alternate on the same server ({args.rounds} rounds of "
        f"{args.seconds / args.rounds:.0f} s each, {args.seconds:.0f} s of each measured, "
        f"{3:.0f} s unmeasured after each crawler phase), after {args.warmup:.0f} s of reading; "
        f"SQLite on a copy of the {args.threats:,}-threat data set (the crawler's threats never "
        f"reach the shared file); {machine}, shared with other work: ratios matter more than "
        "absolute figures.",
        "",
        "Hit rate: reads answered `X-Cache: HIT` over all reads (a MISS, a COALESCED wait for "
        "a replay and a STALE answer all count against it); field tier: hits over field "
        "lookups from `/api/cache/stats` (COALESCED waits and STALE answers counted as misses). "
        "Refreshes: field entries and whole operations recomputed in the background, after "
        "writes and on expiry (`refresh` in `/api/cache/stats`). A stale read is one "
        "that started after k ingested threats' mutations returned and counts fewer than base + k "
        "(the filtered lists: base + those of the k that match the filter). DB queries per read "
        "come from `/api/metrics` over the phase and include the ingests' and refreshes' own. "
        "Client CPU is the reader process's share of one core; machine is all cores busy.",
        "",
        f"Command: `{' '.join(['.venv/bin/python -m bench.live_dashboard', *sys.argv[1:]])}`",
        "",
        "| configuration | threats at start | reads | reads/s | p50 ms | p99 ms | p99.9 ms | max ms | worst 1 s p99 ms | reads > 50 ms "
        "| hit rate | field tier | stale | errors | DB queries / read | refreshes | ingested | client CPU | machine busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    merged: dict[tuple[str, str], Figures] = {}
    for config, run in results.items():
        for kind in dict.fromkeys(p.kind for p in run.phases):
            f = merged[(config, kind)] = Figures([p for p in run.phases if p.kind == kind])
            refreshes = "n/a" if f.refreshed is None else f"{f.refreshed:,}"
            lines.append(
                f"| {config}: {LABELS[kind]} | {run.base:,} | {f.reads:,} | {f.rps:,.0f} | {f.p(50):.2f} | {f.p(99):.1f} | "
                f"{f.p(99.9):.1f} | {1000 * f.latencies[-1] if f.latencies else float('nan'):.1f} | "
                f"{f.worst_window_p99:.1f} | {f.slow} | {f.hit_rate:.2%} | {_share(f.field_hit_rate)} | "
                f"{f.stale} | {f.errors} | {f.queries_per_read:.3f} | {refreshes} | {f.ingested:,} | "
                f"{f.client_cpu:.0%} | {f.machine_busy:.0%} |"
            )
    lines += ["", "## Targets", ""]
    lines += ["| configuration | target | measured | verdict |", "|---|---|---|---|"]
    for config in results:
        quiet, crawl = merged.get((config, "quiet")), merged.get((config, "crawler"))
        if quiet is None or crawl is None:
            continue
        new_slow = sum(
            r[1] > SLOW and r[2] not in quiet.slow_ops for p in crawl.phases for r in p.reads
        )
        p999 = crawl.p(99.9) / quiet.p(99.9)
        rps = crawl.rps / quiet.rps
        rows = [
            ("p99.9 with the crawler <= 2x without", f"{p999:.2f}x ({crawl.p(99.9):.1f} / {quiet.p(99.9):.1f} ms)", p999 <= 2),
            ("no read over 50 ms that is not also slow without", f"{new_slow} (of {crawl.slow} over 50 ms, {crawl.slow_near_batch} of those during a batch or 1 s after it; {quiet.slow} without)", new_slow == 0),
            ("throughput >= 0.8x", f"{rps:.2f}x", rps >= 0.8),
            ("hit rate >= 99% with the crawler", f"{crawl.hit_rate:.2%}", crawl.hit_rate >= 0.99),
            ("0 stale reads", f"{crawl.stale + quiet.stale}", crawl.stale + quiet.stale == 0),
            ("0 errors", f"{crawl.errors + quiet.errors}", crawl.errors + quiet.errors == 0),
        ]  # fmt: skip
        if config == "sqlite" and crawl.batches:
            rate = 1000 / statistics.median(crawl.batches)
            rows.append(
                (
                    "1,000-threat batches >= 5,000 threats/s (under load)",
                    f"{rate:,.0f} threats/s",
                    rate >= 5000,
                )
            )
        lines += [f"| {config} | {t} | {m} | {_verdict(ok)} |" for t, m, ok in rows]
    expiring = merged.get((EXPIRING, "expiring"))
    quiet = merged.get(("sqlite", "quiet"))
    if expiring is not None and quiet is not None:
        ratio = expiring.p(99) / quiet.p(99)
        lines.append(
            f"| {EXPIRING} | reader p99 unchanged across expiries (<= 1.25x the quiet phase's) "
            f"| {ratio:.2f}x ({expiring.p(99):.1f} / {quiet.p(99):.1f} ms) | {_verdict(ratio <= 1.25)} |"
        )
    lines += [
        "",
        "## Ingest",
        "",
        "Each ingest timed from the request to its response; a batch's throughput is 1,000 "
        "threats over its median duration. Idle: three batches and three single threats after the "
        "readers stopped, 1 s apart.",
        "",
        "| configuration | single ingests | single median ms | single max ms | single idle median ms | batches under load | batches idle |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for config, run in results.items():
        crawl = merged.get((config, "crawler"))
        if crawl is None:
            continue
        idle = [i.seconds for i in run.idle if i.ok and i.threats > 1]
        idle_singles = [i.seconds for i in run.idle if i.ok and i.threats == 1]
        lines.append(
            f"| {config} | {len(crawl.singles)} | {1000 * statistics.median(crawl.singles) if crawl.singles else float('nan'):.1f} | "
            f"{1000 * max(crawl.singles, default=float('nan')):.1f} | {_ms(idle_singles)} | {_batch_rate(crawl.batches)} | {_batch_rate(idle)} |"
        )
    if expiring is not None:
        lines += [
            "",
            "## Stale while revalidate",
            "",
            f"`{EXPIRING}`: a server with `CACHE_TTL_STATS`, `CACHE_TTL_THREATS` and "
            f"`CACHE_TTL_CHARTS` set to {swr_ttl} s (the fields' `swr=30` unchanged), no crawler: "
            f"every entry expires about every {swr_ttl} s under load, {expiring.seconds / swr_ttl:.0f} "
            "times in the phase. A whole operation past its max age is answered STALE while one "
            "replay recomputes it, and a field the same way while one flight recomputes it; STALE "
            "answers count against both hit rates, though nobody waited for them. DB queries per "
            "read say how many reached the database.",
        ]
    return lines
