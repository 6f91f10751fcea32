"""What every benchmark shares: the data set, a server process, a load generator, a report.

The load generator is a closed loop of keep-alive HTTP/1.1 connections on raw asyncio
sockets: a few microseconds of client work per request, so that on a 2-core machine the
server, not the client, is what gets measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"
VAJRA = str(Path(sys.executable).with_name("vajra"))

DASHBOARD = """query Dashboard {
  stats { totalThreats critical high medium low info last24h sources lastIngestedAt }
  threats(page: 1, limit: 10) {
    total hasNextPage
    items { id source externalId title severity category tags publishedAt }
  }
  trend(days: 10) { date count }
  severityBreakdown { severity count }
  sourceBreakdown(limit: 10) { source count }
}"""


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def ensure_dataset(threats: int) -> Path:
    """A SQLite file holding exactly `threats` demo threats, made once and reused."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"threats-{threats}.db"
    marker = path.with_suffix(".ready")
    if not (path.exists() and marker.exists()):
        for stale in DATA.glob(f"{path.name}*"):
            stale.unlink()
        env = {**os.environ, "DATABASE_URL": sqlite_url(path)}
        subprocess.run([VAJRA, "seed", "--threats", str(threats)], check=True, env=env)
        marker.write_text("ok")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(env: dict[str, str], *, workers: int = 1, factory: str | None = None) -> Iterator[int]:
    """`vajra serve` (or uvicorn on another app `factory`) in a child process; yields its
    port once /health answers."""
    with served(env, workers=workers, factory=factory) as (port, _):
        yield port


@contextlib.contextmanager
def served(
    env: dict[str, str], *, workers: int = 1, factory: str | None = None
) -> Iterator[tuple[int, int]]:
    """As `server`, yielding the port and the child's pid (the server itself with one worker)."""
    port = free_port()
    full_env = {**os.environ, "LOG_LEVEL": "WARNING", "VAJRA_DEMO_THREATS": "0", **env}
    args = [VAJRA, "serve", "--port", str(port), "--workers", str(workers), "--no-demo"]
    if factory is not None:
        args = [
            sys.executable, "-m", "uvicorn", factory, "--factory", "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
    proc = subprocess.Popen(args, env=full_env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.1)
        yield port, proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def get_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return orjson.loads(response.read())


def graphql_request(port: int, query: str, variables: dict[str, Any] | None = None) -> bytes:
    body = orjson.dumps({"query": query, "variables": variables or {}})
    head = (
        f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class LoadResult:
    connections: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def requests(self) -> int:
        return len(self.latencies) + self.errors

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, p: float) -> float:
        """Milliseconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    @property
    def p50(self) -> float:
        return 1000 * statistics.median(self.latencies) if self.latencies else float("nan")

    @property
    def p99(self) -> float:
        return self.percentile(99)


async def _connection(
    port: int, request: bytes, stop: float, result: LoadResult, max_requests: int
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop and result.requests < max_requests:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            elapsed = time.perf_counter() - started
            if head.startswith(b"HTTP/1.1 200") and b'"errors"' not in body:
                result.latencies.append(elapsed)
            else:
                result.errors += 1
    finally:
        writer.close()


def load(
    port: int, request: bytes, *, connections: int, seconds: float, max_requests: int = 10**9
) -> LoadResult:
    """Keep `connections` requests in flight for `seconds` (or `max_requests`)."""

    async def run() -> LoadResult:
        result = LoadResult(connections=connections, seconds=seconds)
        started = time.perf_counter()
        stop = started + seconds
        await asyncio.gather(
            *(_connection(port, request, stop, result, max_requests) for _ in range(connections))
        )
        result.seconds = time.perf_counter() - started
        return result

    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(run())
    return asyncio.run(run())


class RedisProcess:
    """A redis-server of the benchmark's own: its command counts are ours alone."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.ping():
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def ping(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def calls(self) -> dict[str, int]:
        """{command: calls} from INFO commandstats, without the INFO calls themselves."""
        stats = redis.Redis(port=self.port, socket_timeout=2).info("commandstats")
        return {
            k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items() if k != "cmdstat_info"
        }


def machine() -> str:
    cpus = os.cpu_count()
    return f"{platform.python_implementation()} {platform.python_version()}, {cpus} cores, {platform.machine()}"


def write_report(name: str, lines: list[str]) -> Path:
    path = ROOT / "bench" / "reports" / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class WrkResult:
    connections: int
    rps: float
    p50: float  # milliseconds
    p99: float
    requests: int
    errors: int


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        return float("nan")
    value, unit = float(match[1]), match[2]
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def wrk(
    port: int, body: bytes, *, connections: int, seconds: float, path: str = "/graphql"
) -> WrkResult:
    """wrk (one thread: the server has the other core) POSTing `body` as JSON."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk")
    script = f'wrk.method = "POST"\nwrk.body = [==[{body.decode()}]==]\nwrk.headers["Content-Type"] = "application/json"\n'
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    args = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--latency", "-s", handle.name,
        f"http://127.0.0.1:{port}{path}",
    ]  # fmt: skip
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    Path(handle.name).unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non_2xx[1]) if non_2xx else 0) + (
        sum(int(g) for g in socket.groups()) if socket else 0
    )
    return WrkResult(
        connections, rps, _ms(latency.get("50", "")), _ms(latency.get("99", "")), requests, errors
    )
