"""The warm dashboard on one Redis node, on a 3-master Redis Cluster and behind Sentinel,
side by side in one run: the field tier, the whole-operation L2 path and the whole-operation
L1 path.

    .venv/bin/python -m bench.cluster [--seconds 5] [--rounds 3] [--threats 20000] [--slice 0.5]

Every Redis server is the benchmark's own, started here on free ports and stopped at the
end: one node; a cluster of 3 masters with a replica each (tests/redis_server.py); a master,
a replica and 3 Sentinels. A SQLite file of `--threats` threats is seeded once. Paths:

    field  CACHE_OPERATIONS=false: every resolver's entry is read from Redis (one MGET a
           tick); the field tier has no in-process tier, every request reads Redis
    L2     CACHE_OPERATIONS=true, CACHE_LOCAL_MB=0: every operation hit reads Redis
    L1     CACHE_OPERATIONS=true, default local tier: hits are answered in-process

Every round starts, for each path, a fresh `vajra serve` per topology, the three side by
side; each is warmed until the dashboard is served from the cache (every field HIT in
`extensions.cache`, or `X-Cache: HIT`) and given 1 s of unmeasured load; then the harness's
load generator measures at 1 and 16 connections, `--seconds` per topology, in `--slice`
slices that alternate the topologies (single, cluster, sentinel, single, ...; the order
rotated from round to round), so that whatever else the machine runs falls on the three
alike. Redis commands are counted from INFO commandstats on every node before
and after each row, round trips from INFO stats total_reads_processed (read events: one per
command or pipeline a client sends). In round 1 every (path, topology) is also probed with
single requests, one at a time, counted per request and per node. Last, the dashboard's
Redis reads are replayed in this process with the cache's own backends, to measure the
client CPU a read costs on each topology. Writes bench/reports/cluster.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis

from bench.harness import (
    DASHBOARD,
    VAJRA,
    LoadResult,
    graphql_request,
    load,
    machine,
    server,
    sqlite_url,
    write_report,
)
from cache.backends import Backend, backend_for
from cache.keys import KeySpace
from tests.redis_server import RedisCluster, RedisServer, SentinelServer

CONNECTIONS = (1, 16)
TOPOLOGIES = ("single", "cluster", "sentinel")
TARGETS = {"cluster": 0.7, "sentinel": 0.95}
UNCHANGED = 0.95  # the L1 path: no slower than on one node, within the noise
SERVICE = "vajra"
NAMESPACE = "bench"
QUICK_SYNC = ["--repl-diskless-sync-delay", "0"]
# Sent whatever the load: the cache's listener heartbeat (PING), Sentinel's hello (PUBLISH)
# and pings, a replica's acknowledgements (REPLCONF), our own INFO.
BACKGROUND = frozenset({"ping", "publish", "replconf", "info", "hello", "sentinel"})
PROBES = 20
WARMUP = 1.0  # seconds of unmeasured load on every fresh server
READS = 8000  # backend reads per client-CPU measurement


@dataclass(frozen=True)
class PathSpec:
    name: str
    env: dict[str, str]


PATHS = (
    PathSpec("field", {"CACHE_OPERATIONS": "false"}),
    PathSpec("L2", {"CACHE_OPERATIONS": "true", "CACHE_LOCAL_MB": "0"}),
    PathSpec("L1", {"CACHE_OPERATIONS": "true"}),
)


@dataclass(frozen=True)
class Snapshot:
    calls: dict[str, int]
    reads: int


@dataclass
class Node:
    """One redis-server of a topology, with a connection of the benchmark's own."""

    label: str
    role: str  # master, replica or sentinel
    server: RedisServer
    client: redis.Redis = field(init=False)

    def __post_init__(self) -> None:
        self.client = redis.Redis(port=self.server.port, socket_timeout=5)

    def snapshot(self) -> Snapshot:
        info = self.client.info("commandstats", "stats")
        calls = {
            k.removeprefix("cmdstat_"): int(v["calls"])
            for k, v in info.items()
            if k.startswith("cmdstat_")
        }
        return Snapshot(calls, int(info["total_reads_processed"]))


@dataclass
class Usage:
    """What every node of a topology did between two snapshots (our INFO calls left out)."""

    calls: dict[str, dict[str, int]]  # node label -> command -> calls
    reads: dict[str, int]  # node label -> read events
    roles: dict[str, str]

    def data(self) -> list[str]:
        return [label for label, role in self.roles.items() if role != "sentinel"]

    def commands(self, *, background: bool = False) -> dict[str, int]:
        """Commands on the data nodes, by name: what requests send, or (background=True)
        what is sent whatever the load."""
        total: dict[str, int] = {}
        for label in self.data():
            for name, n in self.calls[label].items():
                if n and (name in BACKGROUND) == background:
                    total[name] = total.get(name, 0) + n
        return total

    def touched(self) -> int:
        """Data nodes that received a request's command (not just background ones)."""
        return sum(
            any(n for name, n in self.calls[label].items() if name not in BACKGROUND)
            for label in self.data()
        )

    def round_trips(self) -> int:
        return sum(self.reads[label] for label in self.data())

    def on_replicas(self) -> int:
        """Request commands that reached a replica (none should: reads go to masters)."""
        return sum(
            n
            for label, role in self.roles.items()
            if role == "replica"
            for name, n in self.calls[label].items()
            if name not in BACKGROUND
        )

    def sentinel_commands(self) -> int:
        """SENTINEL queries (not the Sentinels' pings and hellos to each other)."""
        return sum(
            n
            for label, role in self.roles.items()
            if role == "sentinel"
            for name, n in self.calls[label].items()
            if name.startswith("sentinel")
        )


@dataclass
class Topology:
    name: str
    url: str
    nodes: list[Node]

    def snapshot(self) -> dict[str, Snapshot]:
        return {node.label: node.snapshot() for node in self.nodes}

    def since(self, before: dict[str, Snapshot]) -> Usage:
        after = self.snapshot()
        calls = {}
        reads = {}
        for label, snap in after.items():
            old = before[label]
            delta = {k: v - old.calls.get(k, 0) for k, v in snap.calls.items()}
            delta.pop("info", None)
            calls[label] = {k: v for k, v in delta.items() if v}
            reads[label] = snap.reads - old.reads - 1  # the read of our INFO
        return Usage(calls, reads, {node.label: node.role for node in self.nodes})

    def close(self) -> None:
        for node in self.nodes:
            node.client.close()


@dataclass
class Row:
    round: int
    path: str
    topology: str
    result: LoadResult
    usage: Usage
    after: str  # the cache's answer to a request right after the row

    def per_request(self, command: str) -> float:
        return self.usage.commands().get(command, 0) / max(self.result.requests, 1)

    @property
    def round_trips(self) -> float:
        return self.usage.round_trips() / max(self.result.requests, 1)


@dataclass
class Probe:
    """Single requests, one at a time, on a warm server: medians per request."""

    commands: dict[str, float]
    touched: float
    round_trips: float
    sentinel: float
    replicas: float
    background: dict[str, float]  # per second, on an idle server


def wait(what: str, ready: Any, deadline: float = 30.0) -> None:
    stop = time.monotonic() + deadline
    while not ready():
        if time.monotonic() > stop:
            raise RuntimeError(f"not {what} within {deadline} s")
        time.sleep(0.05)


def start_single(folder: Path, started: list[Any]) -> Topology:
    node = RedisServer(folder)
    started.append(node)
    node.start()
    return Topology("single", node.url, [Node(f":{node.port}", "master", node)])


def start_cluster(folder: Path, started: list[Any]) -> Topology:
    cluster = RedisCluster(folder)
    started.append(cluster)
    cluster.start()
    wait("3 masters", lambda: len(cluster.masters()) == 3)
    masters = {s.port for s in cluster.masters()}
    nodes = [
        Node(f":{s.port}", "master" if s.port in masters else "replica", s) for s in cluster.servers
    ]
    return Topology("cluster", cluster.url, nodes)


def start_sentinel(folder: Path, started: list[Any]) -> Topology:
    """As tests/test_sentinel.py's `group`: a master, its replica in sync, 3 Sentinels that
    each know the replica."""
    (folder / "master").mkdir()
    master = RedisServer(folder / "master", extra=QUICK_SYNC)
    started.append(master)
    master.start()
    (folder / "replica").mkdir()
    replica = RedisServer(
        folder / "replica", extra=[*QUICK_SYNC, "--replicaof", "127.0.0.1", str(master.port)]
    )
    started.append(replica)
    replica.start()
    with redis.Redis(port=replica.port, socket_timeout=2) as r:
        wait(
            "the replica in sync",
            lambda: r.info("replication").get("master_link_status") == "up",
        )
    sentinels = []
    for i in range(3):
        (folder / f"sentinel{i}").mkdir()
        sentinel = SentinelServer(folder / f"sentinel{i}", SERVICE, master.port)
        started.append(sentinel)
        sentinel.start()
        sentinels.append(sentinel)
    for sentinel in sentinels:
        with redis.Redis(port=sentinel.port, socket_timeout=2) as s:

            def knows_the_replica(s: redis.Redis = s) -> bool:
                return any(
                    int(r["port"]) == replica.port and r.get("master-link-status") == "ok"
                    for r in s.sentinel_slaves(SERVICE)
                )

            wait("every Sentinel knowing the replica", knows_the_replica)
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinels)
    nodes = [
        Node(f":{master.port}", "master", master),
        Node(f":{replica.port}", "replica", replica),
    ]
    nodes += [Node(f":{s.port}", "sentinel", s) for s in sentinels]
    return Topology("sentinel", f"redis+sentinel://{hosts}/{SERVICE}", nodes)


def post(port: int, body: bytes, *, debug: bool = False) -> tuple[str, dict[str, Any]]:
    """(X-Cache, JSON body) of one dashboard request."""
    headers = {"Content-Type": "application/json"}
    if debug:
        headers["X-Cache-Debug"] = "1"
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.headers.get("X-Cache", ""), orjson.loads(response.read())


def served_from_cache(path: PathSpec, port: int, body: bytes) -> str:
    """The cache's answer: X-Cache for the operation paths; for the field tier HIT when
    every field of `extensions.cache` says HIT (else their statuses)."""
    if path.name != "field":
        return post(port, body)[0] or "-"
    answer = post(port, body, debug=True)[1]
    statuses = {f["status"] for f in answer.get("extensions", {}).get("cache", [])}
    return "HIT" if statuses == {"HIT"} else ",".join(sorted(statuses)) or "-"


def warm(path: PathSpec, port: int, body: bytes) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while (status := served_from_cache(path, port, body)) != "HIT":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path.name}: no HIT on port {port} (last: {status})")
        time.sleep(0.05)
    answer = post(port, body)[1]
    if "errors" in answer:
        raise RuntimeError(f"{path.name}: errors in a warm answer: {answer['errors']}")
    return answer


def probe(topology: Topology, port: int, body: bytes) -> Probe:
    before = topology.snapshot()
    started = time.monotonic()
    time.sleep(1.0)
    idle = topology.since(before)
    seconds = time.monotonic() - started
    usages = []
    for _ in range(PROBES):
        before = topology.snapshot()
        post(port, body)
        usages.append(topology.since(before))
    names = sorted({name for u in usages for name in u.commands()})
    return Probe(
        commands={n: statistics.median(u.commands().get(n, 0) for u in usages) for n in names},
        touched=statistics.median(u.touched() for u in usages),
        round_trips=statistics.median(u.round_trips() for u in usages),
        sentinel=statistics.median(u.sentinel_commands() for u in usages),
        replicas=max(u.on_replicas() for u in usages),
        background={k: v / seconds for k, v in idle.commands(background=True).items()},
    )


def seed(database: str, threats: int) -> None:
    """The data set, with the cache off: `vajra seed` would otherwise announce a new epoch on
    the default REDIS_URL, which is not ours."""
    env = {**os.environ, "DATABASE_URL": database, "CACHE_ENABLED": "false"}
    run = [VAJRA, "seed", "--threats", str(threats)]
    subprocess.run(run, check=True, env=env, stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def topologies(folder: Path) -> Iterator[dict[str, Topology]]:
    started: list[Any] = []
    made: dict[str, Topology] = {}
    try:
        for name, start in (
            ("single", start_single),
            ("cluster", start_cluster),
            ("sentinel", start_sentinel),
        ):
            (folder / name).mkdir()
            made[name] = start(folder / name, started)
        yield made
    finally:
        for topology in made.values():
            topology.close()
        for server_ in reversed(started):
            server_.stop()


def dashboard_keys(topology: Topology) -> dict[str, list[str]]:
    """The keys a warm dashboard reads, found in the topology's own data: for L2 the
    operation's entry and its tags' generations; for the field tier every field entry and
    every generation key."""
    found: dict[str, list[str]] = {"o": [], "e": [], "g": []}
    stored: dict[str, Any] = {}
    operation = ""
    for node in topology.nodes:
        if node.role != "master":
            continue
        for kind in found:
            keys = sorted(k.decode() for k in node.client.scan_iter(f"{NAMESPACE}:{kind}:*"))
            found[kind] += keys
            if kind == "o" and keys and not stored:
                stored = orjson.loads(node.client.get(keys[0]) or b"{}")
                operation = keys[0]
    if not stored or not found["e"] or not found["g"]:
        raise RuntimeError(f"{topology.name}: not the keys of a warm dashboard: {found}")
    space = KeySpace(NAMESPACE, "-")
    generations = [space.generation(tag) for tag in stored["tags"]]
    return {"L2": [operation, *generations], "field": found["e"] + found["g"]}


async def read_cost(backend: Backend, keys: list[str], concurrency: int) -> float:
    """CPU microseconds of this process per `get_many(keys)`, `concurrency` at a time."""
    await backend.get_many(keys)  # connected
    each = READS // concurrency

    async def reader() -> None:
        for _ in range(each):
            await backend.get_many(keys)

    cpu = time.process_time()
    await asyncio.gather(*(reader() for _ in range(concurrency)))
    return (time.process_time() - cpu) / (each * concurrency) * 1e6


def client_costs(
    made: dict[str, Topology], rounds: int
) -> tuple[dict[tuple[str, str, int], float], dict[str, int]]:
    """Median client CPU per read, by (read, topology, concurrency), measured in this process
    with the cache's own backends, topologies alternating; and how many keys each read has."""

    async def measure(
        topology: Topology, keys: dict[str, list[str]]
    ) -> dict[tuple[str, int], float]:
        backend = backend_for(topology.url, timeout=1.0)
        try:
            return {
                (read, concurrency): await read_cost(backend, keys[read], concurrency)
                for read in ("L2", "field")
                for concurrency in CONNECTIONS
            }
        finally:
            await backend.close()

    keys = {name: dashboard_keys(topology) for name, topology in made.items()}
    samples: dict[tuple[str, str, int], list[float]] = {}
    for round_ in range(rounds):
        for name in rotated(round_):
            for (read, concurrency), cost in run(measure(made[name], keys[name])).items():
                samples.setdefault((read, name, concurrency), []).append(cost)
    sizes = {read: len(keys["single"][read]) for read in ("L2", "field")}
    return {k: statistics.median(v) for k, v in samples.items()}, sizes


def run(coroutine: Any) -> Any:
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


def rotated(round_: int) -> list[str]:
    """single, cluster, sentinel; then cluster, sentinel, single; ...: no topology always
    runs first."""
    shift = round_ % len(TOPOLOGIES)
    return [*TOPOLOGIES[shift:], *TOPOLOGIES[:shift]]


def median(rows: list[Row], attribute: str) -> float:
    return float(statistics.median(getattr(row.result, attribute) for row in rows))


def merged(parts: list[tuple[LoadResult, Usage]]) -> tuple[LoadResult, Usage]:
    """One row out of its slices."""
    first = parts[0][1]
    result = LoadResult(parts[0][0].connections, sum(r.seconds for r, _ in parts))
    calls: dict[str, dict[str, int]] = {label: {} for label in first.calls}
    reads = dict.fromkeys(first.reads, 0)
    for part, usage in parts:
        result.latencies += part.latencies
        result.errors += part.errors
        for label, counts in usage.calls.items():
            for name, n in counts.items():
                calls[label][name] = calls[label].get(name, 0) + n
            reads[label] += usage.reads[label]
    return result, Usage(calls, reads, first.roles)


def measure_path(
    path: PathSpec,
    round_: int,
    made: dict[str, Topology],
    base: dict[str, str],
    body: bytes,
    args: argparse.Namespace,
    probes: dict[tuple[str, str], Probe],
    answers: dict[tuple[str, str], bytes],
) -> list[Row]:
    """One round of one path: a fresh server per topology, the three side by side, their
    measurements interleaved slice by slice."""
    order = rotated(round_ - 1)
    slices = max(1, round(args.seconds / args.slice))
    rows = []
    with contextlib.ExitStack() as stack:
        ports = {
            name: stack.enter_context(server({**base, **path.env, "REDIS_URL": made[name].url}))
            for name in order
        }
        requests = {name: graphql_request(port, DASHBOARD) for name, port in ports.items()}
        for name in order:
            answers[(path.name, name)] = orjson.dumps(warm(path, ports[name], body)["data"])
            if round_ == 1:
                probes[(path.name, name)] = probe(made[name], ports[name], body)
        for name in order:
            load(ports[name], requests[name], connections=max(CONNECTIONS), seconds=WARMUP)
        for connections in CONNECTIONS:
            parts: dict[str, list[tuple[LoadResult, Usage]]] = {name: [] for name in order}
            for _ in range(slices):
                for name in order:
                    before = made[name].snapshot()
                    result = load(
                        ports[name],
                        requests[name],
                        connections=connections,
                        seconds=args.seconds / slices,
                    )
                    parts[name].append((result, made[name].since(before)))
            for name in order:
                result, usage = merged(parts[name])
                after = served_from_cache(path, ports[name], body)
                row = Row(round_, path.name, name, result, usage, after)
                rows.append(row)
                print(
                    f"round {round_} {path.name:>5} {name:>8} {connections:>2} conn: "
                    f"{result.rps:7.0f} req/s  p50 {result.p50:6.2f} ms  "
                    f"p99 {result.p99:6.2f} ms  errors {result.errors}  "
                    f"MGET/req {row.per_request('mget'):.3f}  "
                    f"round trips/req {row.round_trips:.3f}  after: {after}"
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threats", type=int, default=20_000)
    parser.add_argument(
        "--slice", type=float, default=0.5, help="seconds of one topology before the next"
    )
    args = parser.parse_args()
    body = orjson.dumps({"query": DASHBOARD, "variables": {}})  # as graphql_request's
    rows: list[Row] = []
    probes: dict[tuple[str, str], Probe] = {}
    answers: dict[tuple[str, str], bytes] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        database = sqlite_url(folder / "threats.db")
        seed(database, args.threats)
        with topologies(folder) as made:
            for name, topology in made.items():
                print(f"{name}: {topology.url}")
            base = {
                "DATABASE_URL": database,
                "CACHE_NAMESPACE": NAMESPACE,
                # Nothing may expire during a run (60 s for stats by default).
                **{f"CACHE_TTL_{kind}": "3600" for kind in ("STATS", "THREATS", "CHARTS")},
                # The warm-up reads each field's cache status (X-Cache-Debug).
                "CACHE_DEBUG_HEADER": "true",
            }
            for round_ in range(1, args.rounds + 1):
                for path in PATHS:
                    rows += measure_path(path, round_, made, base, body, args, probes, answers)
            costs, sizes = client_costs(made, args.rounds)
            for (read, name, concurrency), cost in sorted(costs.items()):
                print(f"client CPU, {read} read, {name}, {concurrency} at a time: {cost:.1f} us")
    elapsed = time.monotonic() - started
    for path in PATHS:
        if len({answers[(path.name, name)] for name in TOPOLOGIES}) != 1:
            raise RuntimeError(f"{path.name}: the topologies answered different data")
    size = len(answers[("L1", "single")])
    lines = report(args, rows, probes, costs, sizes, elapsed, size)
    print(write_report("cluster", lines))


def report(
    args: argparse.Namespace,
    rows: list[Row],
    probes: dict[tuple[str, str], Probe],
    costs: dict[tuple[str, str, int], float],
    sizes: dict[str, int],
    elapsed: float,
    size: int,
) -> list[str]:
    def select(path: str, topology: str, connections: int) -> list[Row]:
        return [
            r
            for r in rows
            if r.path == path and r.topology == topology and r.result.connections == connections
        ]

    def ratio(path: str, topology: str, connections: int) -> float:
        single = median(select(path, "single", connections), "rps")
        return median(select(path, topology, connections), "rps") / single

    def paired(path: str, topology: str, connections: int) -> str:
        """The ratio within each round, where the two were measured slice by slice."""
        single = {r.round: r.result.rps for r in select(path, "single", connections)}
        return ", ".join(
            f"{r.result.rps / single[r.round]:.2f}" for r in select(path, topology, connections)
        )

    def target_of(path: str, topology: str) -> float:
        return UNCHANGED if path == "L1" else TARGETS[topology]

    def per_request(path: str, topology: str, connections: int, command: str) -> float:
        return statistics.median(
            r.per_request(command) for r in select(path, topology, connections)
        )

    many = max(CONNECTIONS)
    lines = [
        "# The dashboard on one Redis node, on Redis Cluster and behind Sentinel",
        "",
        "`vajra serve` processes (one worker each, uvloop, httptools); the harness's asyncio "
        "load generator (keep-alive HTTP/1.1) in the benchmark's process; "
        f"{machine()}; SQLite with {args.threats:,} threats. Every Redis server is the "
        "benchmark's own, all of them running for the whole run: one node; a cluster of 3 "
        "masters with a replica each; a master, its replica and 3 Sentinels. CACHE_TTL_* = "
        "3600 s so that nothing expires during the run. The three topologies' servers "
        "run side by side, a fresh `vajra serve` per topology for every path and round, "
        "warmed until the dashboard is served from the cache (every field `HIT` in "
        "`extensions.cache` for the field tier, `X-Cache: HIT` for the operation paths) and "
        f"given {WARMUP:g} s of unmeasured load. Each row is {args.seconds:g} s of load at 1 or "
        f"{many} connections, measured in {args.slice:g} s slices that alternate the three "
        "topologies (single, cluster, sentinel, single, ...; the order rotated from round to "
        "round), so that whatever else the machine runs falls on the three alike. Every "
        f"topology answered the same `data` ({size:,} bytes). Whole run: "
        f"{elapsed / 60:.1f} min.",
        "",
        "- **field**: CACHE_OPERATIONS=false. The field tier has no in-process tier (the "
        "local tier that CACHE_LOCAL_MB sizes belongs to the whole-operation cache), so "
        "CACHE_LOCAL_MB is left at its default: every request reads every field's entry and "
        "its tags' generations from Redis, one batched read per event-loop tick (the MGET "
        "counts below show it).",
        "- **L2**: CACHE_OPERATIONS=true, CACHE_LOCAL_MB=0: every hit reads the operation's "
        "entry and its tags' generations from Redis.",
        "- **L1**: CACHE_OPERATIONS=true, default local tier: hits are answered in-process.",
        "",
        f"Command: `.venv/bin/python -m bench.cluster --seconds {args.seconds:g} --rounds "
        f"{args.rounds} --threats {args.threats} --slice {args.slice:g}`",
        "",
        f"## Medians over {args.rounds} rounds",
        "",
        "| path | connections | topology | req/s | p50 ms | p99 ms | errors | x single (req/s) | target | met | x single, round by round |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    verdicts: list[str] = []
    for path in PATHS:
        for connections in CONNECTIONS:
            for name in TOPOLOGIES:
                chosen = select(path.name, name, connections)
                value = ratio(path.name, name, connections)
                errors = sum(r.result.errors for r in chosen)
                label = met = "-"
                if name != "single":
                    target = target_of(path.name, name)
                    label = f">= {target}" + (" (unchanged)" if path.name == "L1" else "")
                    met = "yes" if value >= target else "**NO**"
                    verdict = f"{path.name} at {connections} connection(s) on {name}: {value:.3f}x"
                    if value < target:
                        verdict += f", {(target - value) * 100:.1f} points under {target}x"
                    verdicts.append(verdict + ("" if value < target else f" (>= {target}x)"))
                lines.append(
                    f"| {path.name} | {connections} | {name} | {median(chosen, 'rps'):,.0f} | "
                    f"{median(chosen, 'p50'):.3f} | {median(chosen, 'p99'):.3f} | {errors} | "
                    f"{value:.3f} | {label} | {met} | "
                    f"{paired(path.name, name, connections) if name != 'single' else '-'} |"
                )
    missed = [v for v in verdicts if "under" in v]
    bad = [r for r in rows if r.result.errors or r.after != "HIT"]
    lines += [
        "",
        "*x single* is the ratio of the medians, measured side by side in this run (the "
        "target is judged on it); *round by round* are the ratios within each round, for the "
        "spread. The machine is noisy (other work shares its 2 cores), so no absolute figure "
        "here stands alone.",
        "",
        "Targets missed: " + ("; ".join(missed) if missed else "none") + ".",
        "",
        "Rows with errors, or not served from the cache right after: "
        + (
            ", ".join(f"round {r.round} {r.path} {r.topology} {r.result.connections}" for r in bad)
            or "none"
        )
        + ".",
        "",
        "## Round trips per operation (round 1, single requests one at a time)",
        "",
        f"Medians over {PROBES} requests, each counted on every node before and after. "
        "*Round trips* are the data nodes' read events (INFO stats total_reads_processed): one "
        "per command, or per pipeline, that a client sends a node. *Nodes touched*: data nodes "
        "that received anything but background traffic. *Sentinel queries*: SENTINEL commands "
        "the 3 Sentinels received.",
        "",
        "| path | topology | nodes touched | round trips | Redis commands | Sentinel queries |",
        "|---|---|---:|---:|---|---:|",
    ]
    for path in PATHS:
        for name in TOPOLOGIES:
            p = probes[(path.name, name)]
            commands = ", ".join(f"{k.upper()} {v:g}" for k, v in p.commands.items() if v) or "-"
            sentinel = f"{p.sentinel:g}" if name == "sentinel" else "-"
            lines.append(
                f"| {path.name} | {name} | {p.touched:g} | {p.round_trips:g} | {commands} | "
                f"{sentinel} |"
            )
    lines += [
        "",
        "Background traffic on the data nodes while a warm server is idle (per second, round "
        "1, field path): "
        + "; ".join(
            f"{name}: "
            + (
                ", ".join(
                    f"{k.upper()} {v:.1f}"
                    for k, v in sorted(probes[("field", name)].background.items())
                )
                or "-"
            )
            for name in TOPOLOGIES
        )
        + " (the cache's listener heartbeat, replicas' acknowledgements, Sentinels' checks). "
        "It is in the round-trip counts below, not in their command counts.",
        "",
        "## Under load: Redis commands and round trips per request (medians over the rounds)",
        "",
        "Per request over whole rows, on every data node. GET (the restart guard reading its "
        "marker), ROLE (the Sentinel backend checking it reached the master), CLUSTER and "
        "SENTINEL queries come with each connection the client's pool opens, not with requests.",
        "",
        "| path | connections | topology | MGET | SET | other commands | round trips | nodes touched | Sentinel queries |",
        "|---|---:|---|---:|---:|---|---:|---:|---:|",
    ]
    for path in PATHS:
        for connections in CONNECTIONS:
            for name in TOPOLOGIES:
                chosen = select(path.name, name, connections)
                others = {
                    command: per_request(path.name, name, connections, command)
                    for command in sorted({c for r in chosen for c in r.usage.commands()})
                    if command not in ("mget", "set")
                }
                other = ", ".join(f"{k.upper()} {v:.4f}" for k, v in others.items()) or "-"
                sentinel = "-"
                if name == "sentinel":
                    sentinel = f"{statistics.median(r.usage.sentinel_commands() / max(r.result.requests, 1) for r in chosen):.4f}"
                lines.append(
                    f"| {path.name} | {connections} | {name} | "
                    f"{per_request(path.name, name, connections, 'mget'):.3f} | "
                    f"{per_request(path.name, name, connections, 'set'):.3f} | {other} | "
                    f"{statistics.median(r.round_trips for r in chosen):.3f} | "
                    f"{statistics.median(r.usage.touched() for r in chosen):g} | {sentinel} |"
                )
    lines += [
        "",
        "## Client CPU per Redis read",
        "",
        f"The warm dashboard's reads replayed in the benchmark's process with the cache's own "
        f"backends (`backend_for(REDIS_URL)`), {READS:,} reads a measurement, 1 or {many} in "
        f"flight, topologies alternating, medians over {args.rounds} rounds: CPU time "
        "(`time.process_time()`) of this process per `get_many`, i.e. what the server's event "
        f"loop spends on one read. L2 read: the operation's entry and its generations "
        f"({sizes['L2']} keys); field read: the {sizes['field']} keys of every field entry and "
        "every generation key.",
        "",
        "| read | in flight | single us | cluster us | sentinel us | cluster x single | sentinel x single |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for read in ("L2", "field"):
        for concurrency in CONNECTIONS:
            c = {name: costs[(read, name, concurrency)] for name in TOPOLOGIES}
            lines.append(
                f"| {read} | {concurrency} | {c['single']:.1f} | {c['cluster']:.1f} | "
                f"{c['sentinel']:.1f} | {c['cluster'] / c['single']:.2f} | "
                f"{c['sentinel'] / c['single']:.2f} |"
            )
    control = [
        costs[(r, "sentinel", c)] / costs[(r, "single", c)]
        for r in ("L2", "field")
        for c in CONNECTIONS
    ]
    lines += [
        "",
        "Sentinel and one node run the same client code (only how a connection finds the "
        "master differs, and connections are made before the measurement), so *sentinel x "
        f"single*, {min(control):.2f} to {max(control):.2f} here, is this measurement's own "
        "noise: read *cluster x single* against it.",
    ]
    lines += ["", "## What this shows", ""]
    lines += what_this_shows(select, ratio, paired, per_request, probes, costs, missed)
    lines += [
        "",
        "## Every row",
        "",
        "| round | path | topology | connections | req/s | p50 ms | p99 ms | requests | errors | MGET / req | round trips / req | after |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        r = row.result
        lines.append(
            f"| {row.round} | {row.path} | {row.topology} | {r.connections} | {r.rps:,.0f} | "
            f"{r.p50:.3f} | {r.p99:.3f} | {r.requests:,} | {r.errors} | "
            f"{row.per_request('mget'):.3f} | {row.round_trips:.3f} | {row.after} |"
        )
    return lines


def what_this_shows(
    select: Callable[[str, str, int], list[Row]],
    ratio: Callable[[str, str, int], float],
    paired: Callable[[str, str, int], str],
    per_request: Callable[[str, str, int, str], float],
    probes: dict[tuple[str, str], Probe],
    costs: dict[tuple[str, str, int], float],
    missed: list[str],
) -> list[str]:
    """Sentences built from this run's figures."""
    many = max(CONNECTIONS)
    field, l2 = probes[("field", "cluster")], probes[("L2", "cluster")]
    lines = [
        f"- **Round trips.** On one node and behind Sentinel a warm dashboard is one MGET, one "
        f"round trip, on the field tier as on the L2 path. On the cluster the field tier sends "
        f"{field.commands.get('mget', 0):g} MGET calls, one per hash slot its keys fall in "
        "(redis-py's `mget_nonatomic`: the entries spread, the generations share the "
        f"`{{{NAMESPACE}}}` slot), but as {field.round_trips:g} round trip(s): the calls are "
        f"pipelined per node, nodes in parallel, and {field.touched:g} of the 3 masters are "
        f"touched. The L2 hit is {l2.commands.get('mget', 0):g} MGET calls (the entry's slot, "
        f"the generations' slot) in {l2.round_trips:g} round trip(s) to {l2.touched:g} "
        "node(s): whether both slots have the same master depends on the entry's key (its "
        "epoch is in it), so it may be 1 or 2 from one run to the next. Request commands "
        "that reached a replica, at most, in any probe: "
        f"{max(p.replicas for p in probes.values()):g}; Sentinel queries per request (median): "
        f"{max(p.sentinel for (_, name), p in probes.items() if name == 'sentinel'):g}.",
        f"- **Batching under load.** At {many} connections one MGET a tick serves several "
        f"requests: {per_request('field', 'single', many, 'mget'):.3f} MGET per field-tier "
        f"request on one node, {per_request('field', 'cluster', many, 'mget'):.3f} on the "
        "cluster (one per slot per batch). The L2 path reads outside the tick batcher: one "
        "read per request whatever the load.",
    ]
    # What the cluster client's extra CPU per read predicts for a CPU-bound server.
    for read, path in (("L2", "L2"), ("field", "field")):
        extra = costs[(read, "cluster", many)] - costs[(read, "single", many)]
        reads = per_request(path, "single", many, "mget")  # reads per request on one node
        single_rps = median(select(path, "single", many), "rps")
        predicted = 1 / (1 + extra * reads * single_rps / 1e6)
        lines.append(
            f"- **Client CPU, {path}.** The {read} read costs the cluster client "
            f"{costs[(read, 'cluster', many)]:.0f} us of CPU against "
            f"{costs[(read, 'single', many)]:.0f} us for one node "
            f"({costs[(read, 'cluster', many)] / costs[(read, 'single', many)]:.2f}x, with "
            f"{many} in flight): redis-py's cluster path partitions the keys by slot, builds "
            "a pipeline per call and gathers one task per node. At "
            f"{many} connections the server is CPU-bound; with {reads:.3f} reads per request "
            f"at {single_rps:,.0f} req/s that extra CPU alone predicts about "
            f"{predicted:.2f}x single; measured {ratio(path, 'cluster', many):.2f}x (round by "
            f"round {paired(path, 'cluster', many)})."
        )
    sentinel = ", ".join(
        f"{p} {ratio(p, 'sentinel', c):.2f}x at {c}" for p in ("field", "L2") for c in CONNECTIONS
    )
    l1 = ", ".join(
        f"{t} {ratio('L1', t, c):.2f}x at {c}" for t in ("cluster", "sentinel") for c in CONNECTIONS
    )
    lines += [
        f"- **Sentinel** is one node's client once the master is known (client CPU "
        f"{costs[('L2', 'sentinel', many)] / costs[('L2', 'single', many)]:.2f}x single per "
        "L2 read): the Sentinels are asked only when the pool opens a connection, every read "
        f"goes straight to the master, and it sends the same commands as one node (tables "
        f"above). Its ratios: {sentinel}"
        + (
            "; round by round where a target is missed: "
            + "; ".join(
                f"{p} at {c}: {paired(p, 'sentinel', c)}"
                for p in ("field", "L2")
                for c in CONNECTIONS
                if ratio(p, "sentinel", c) < TARGETS["sentinel"]
            )
            if any(
                ratio(p, "sentinel", c) < TARGETS["sentinel"]
                for p in ("field", "L2")
                for c in CONNECTIONS
            )
            else ""
        )
        + ".",
        "- **L1** sends no Redis command per request on any topology (tables above): nothing "
        f"in an L1 hit goes to Redis. Its ratios: {l1}; round by round: "
        + "; ".join(
            f"{t} at {c}: {paired('L1', t, c)}"
            for t in ("cluster", "sentinel")
            for c in CONNECTIONS
        )
        + ".",
        "- **Targets:** " + ("all met." if not missed else "missed: " + "; ".join(missed) + "."),
    ]
    return lines


if __name__ == "__main__":
    main()
