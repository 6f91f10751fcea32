"""`vajra serve` processes of the tests' own, to start, kill and start again; the CLI as a
subprocess. Every process writes its output to a log file that failures can quote."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from redis import asyncio as aioredis

from tests.redis_server import free_port

VAJRA = str(Path(sys.executable).with_name("vajra"))
ROOT = Path(__file__).resolve().parents[1]
START_DEADLINE = 30.0


def base_env(**values: str) -> dict[str, str]:
    """The inherited environment with this worktree's code first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHE_", "VAJRA_"))}
    env.update({"PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING", **values})
    return env


class Server:
    """One `vajra serve --no-demo` on a fixed port; `start()` again after `kill()` reuses it."""

    def __init__(
        self, name: str, env: dict[str, str], directory: Path, args: tuple[str, ...] = ()
    ) -> None:
        self.name = name
        self.env = env
        self.args = args  # more `vajra serve` options: --workers 2, --access-log
        self.port = free_port()
        self.directory = directory
        self.log = directory / f"server-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        # Bumped by every kill: a request that overlapped one failed on purpose.
        self.incarnation = 0
        self.up = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [VAJRA, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--no-demo"]
        args += self.args
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                args, env=self.env, cwd=self.directory, stdout=log, stderr=subprocess.STDOUT
            )

    async def wait_healthy(self, deadline: float = START_DEADLINE) -> None:
        """Until `GET /health` answers 200."""
        stop = time.monotonic() + deadline
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"server {self.name} exited:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/health")).status_code == 200:
                        self.up = True
                        return
                if time.monotonic() > stop:
                    raise RuntimeError(f"server {self.name} not healthy:\n{self.log_tail()}")
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: nothing runs on the way out."""
        self.up = False
        self.incarnation += 1
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        """SIGINT, then SIGKILL if it does not go within a few seconds."""
        self.up = False
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Server]:
        """Started, healthy, and stopped afterwards."""
        self.start()
        try:
            await self.wait_healthy()
            yield self
        finally:
            self.stop()

    def log_tail(self, lines: int = 20) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


async def start_all(servers: list[Server]) -> None:
    for server in servers:
        server.start()
    await asyncio.gather(*(server.wait_healthy() for server in servers))


async def vajra(env: dict[str, str], *args: str, seconds: float = 30) -> tuple[int, str]:
    """Run `vajra ARGS`; returns (exit code, output)."""
    process = await asyncio.create_subprocess_exec(
        VAJRA, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), seconds)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


@contextlib.asynccontextmanager
async def sqlite_server(
    name: str, folder: Path, redis: aioredis.Redis, redis_url: str, **env: str
) -> AsyncIterator[Server]:
    """A `vajra serve` on a new SQLite file in `folder`, caching in a namespace of its own on
    the shared Redis at `redis_url` (`redis` reaches it), whose keys are removed afterwards."""
    namespace = f"{name}-{secrets.token_hex(4)}"
    database = f"sqlite+aiosqlite:///{folder / (name + '.db')}"
    server = Server(
        name,
        base_env(DATABASE_URL=database, REDIS_URL=redis_url, CACHE_NAMESPACE=namespace, **env),
        folder,
    )
    try:
        async with server.running():
            yield server
    finally:
        async for key in redis.scan_iter(match=f"{namespace}:*", count=1000):
            await redis.unlink(key)
