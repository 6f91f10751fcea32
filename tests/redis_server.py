"""A redis-server of the tests' own, on a free port, to kill, pause and restart."""

from __future__ import annotations

import contextlib
import os
import random
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


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(1000):
        port = random.randrange(20_000, 30_000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10_000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


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


class RedisCluster:
    """A Redis Cluster of the tests' own: `masters` masters with one replica each, on free
    ports, each server a `RedisServer` to kill, pause and restart."""

    def __init__(self, directory: Path, masters: int = 3, node_timeout_ms: int = 1000) -> None:
        self.servers: list[RedisServer] = []
        for _ in range(masters * 2):
            port = free_cluster_port()
            path = directory / str(port)
            path.mkdir()
            options = [
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(node_timeout_ms),
                "--repl-diskless-sync-delay", "0",
            ]  # fmt: skip
            self.servers.append(RedisServer(path, port, options))

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers[:3])

    def start(self) -> None:
        for server in self.servers:
            server.start()
        create = [
            "redis-cli", "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in self.servers),
            "--cluster-replicas", "1", "--cluster-yes",
        ]  # fmt: skip
        subprocess.run(
            create,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        self.wait_ok()
        deadline = time.monotonic() + 30
        while sum("slave" in fields[2] for fields in self._nodes()) < len(self.servers) // 2:
            if time.monotonic() > deadline:
                raise RuntimeError("the replicas never joined their masters")
            time.sleep(0.1)

    def cli(self, port: int, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.stdout

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every running node says the cluster is ok and agrees on the masters."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [s for s in self.servers if s.process is not None]
            if all("cluster_state:ok" in self.cli(s.port, "cluster", "info") for s in running):
                return
            time.sleep(0.1)
        raise RuntimeError("the cluster did not become ok")

    def server(self, port: int) -> RedisServer:
        return next(s for s in self.servers if s.port == port)

    def _nodes(self) -> list[list[str]]:
        """`CLUSTER NODES` as a running node sees it, one list of fields per node."""
        running = next(s for s in self.servers if s.process is not None)
        return [line.split() for line in self.cli(running.port, "cluster", "nodes").splitlines()]

    def masters(self) -> list[RedisServer]:
        """The servers that are masters now (as a running node sees it)."""
        return [
            self.server(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
            for fields in self._nodes()
            if "master" in fields[2] and "fail" not in fields[2]
        ]

    def node_id(self, server: RedisServer) -> str:
        return self.cli(server.port, "cluster", "myid").strip()

    def master_of(self, key: str) -> RedisServer:
        """The server that owns `key`'s slot now."""
        running = next(s for s in self.servers if s.process is not None)
        slot = int(self.cli(running.port, "cluster", "keyslot", key).strip())
        for fields in self._nodes():
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for part in fields[8:]:
                low, _, high = part.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return self.server(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
        raise LookupError(f"no master owns slot {slot}")

    def taken_over(self, key: str, old: RedisServer) -> RedisServer | None:
        """The master that owns `key`'s slot now, if it is no longer `old` (None while the
        failover is under way, or while a running node cannot tell)."""
        with contextlib.suppress(LookupError, StopIteration):
            new = self.master_of(key)
            return new if new is not old else None
        return None

    def keyslot(self, key: str) -> int:
        running = next(s for s in self.servers if s.process is not None)
        return int(self.cli(running.port, "cluster", "keyslot", key).strip())

    def move_slot(self, slot: int, source: RedisServer, target: RedisServer) -> int:
        """Migrate `slot` from `source` to `target` as `redis-cli --cluster reshard` does
        (IMPORTING, MIGRATING, MIGRATE of its keys, then the new owner); returns how many keys
        moved."""
        source_id, target_id = self.node_id(source), self.node_id(target)
        self.cli(target.port, "cluster", "setslot", str(slot), "importing", source_id)
        self.cli(source.port, "cluster", "setslot", str(slot), "migrating", target_id)
        moved = 0
        while True:
            keys = self.cli(source.port, "cluster", "getkeysinslot", str(slot), "100").split()
            if not keys:
                break
            self.cli(
                source.port, "migrate", "127.0.0.1", str(target.port), "", "0", "5000",
                "keys", *keys,
            )  # fmt: skip
            moved += len(keys)
        for server in (target, source, *self.masters()):
            self.cli(server.port, "cluster", "setslot", str(slot), "node", target_id)
        return moved

    def reshard(self, source: RedisServer, target: RedisServer, slots: int) -> None:
        """`redis-cli --cluster reshard`: `slots` slots (and their keys) from one master to
        another."""
        reshard = [
            "redis-cli", "--cluster", "reshard", f"127.0.0.1:{source.port}",
            "--cluster-from", self.node_id(source), "--cluster-to", self.node_id(target),
            "--cluster-slots", str(slots), "--cluster-yes",
        ]  # fmt: skip
        subprocess.run(
            reshard,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
