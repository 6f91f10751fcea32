"""A redis-server of the tests' own, on a free port, to kill, pause and restart."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """`start()`, `kill()` (SIGKILL), `pause()` (SIGSTOP), `resume()` (SIGCONT), `restart()`."""

    def __init__(self, directory: Path, port: int | None = None, extra: Sequence[str] = ()) -> None:
        self.binary = shutil.which("redis-server")
        self.port = port or free_port()
        self.directory = directory
        self.extra = list(extra)  # more arguments, e.g. ["--replicaof", "127.0.0.1", "6390"]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def arguments(self) -> list[str]:
        assert self.binary is not None, "redis-server is not on PATH"
        return [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.directory), "--daemonize", "no",
            *self.extra,
        ]  # fmt: skip

    def start(self) -> None:
        args = self.arguments()
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)
            self.kill()


class SentinelServer(RedisServer):
    """A Sentinel watching `service` on the master at `master_port`, in `directory` (which
    must be its own: Sentinel rewrites its configuration file)."""

    def __init__(
        self, directory: Path, service: str, master_port: int, port: int | None = None
    ) -> None:
        super().__init__(directory, port)
        self.service = service
        self.master_port = master_port

    def arguments(self) -> list[str]:
        assert self.binary is not None, "redis-server is not on PATH"
        conf = self.directory / "sentinel.conf"
        if not conf.exists():
            conf.write_text(
                f"port {self.port}\nbind 127.0.0.1\ndaemonize no\ndir {self.directory}\n"
                f"sentinel monitor {self.service} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {self.service} 1000\n"
                f"sentinel failover-timeout {self.service} 5000\n"
            )
        return [self.binary, str(conf), "--sentinel"]
