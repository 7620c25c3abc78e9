"""System metrics of one process (a gateway, Conversation or model replica): CPU, memory,
open files, a heartbeat, and a start counter from which restarts follow.

prometheus_client's own process collector does not work in multiprocess mode, so each replica
samples /proc/self itself every `interval_s` in a daemon thread and sets live gauges labelled
with its deployment and pid (a bounded set: one per replica process). A replica that died has
its live gauges removed at the next scrape (serving/metrics.py `prune_dead`); its starts stay
counted, so `increase(scrm_replica_starts_total[15m])` above the replica count is a restart.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def sample_self() -> dict[str, float]:
    """CPU seconds, resident bytes and open file descriptors of this process (Linux /proc)."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
    rss = int(Path("/proc/self/statm").read_text().split()[1]) * PAGE
    fds = len(os.listdir("/proc/self/fd"))
    return {"cpu": cpu, "rss": rss, "fds": fds}


class Telemetry:
    """One process's system gauges; `start()` samples in the background until `stop()`."""

    def __init__(
        self, deployment: str, interval_s: float = 5.0, registry: CollectorRegistry | None = None
    ):
        self.deployment, self.interval_s = deployment, interval_s
        self.replica = str(os.getpid())
        registry = registry if registry is not None else CollectorRegistry()
        labels = ["deployment", "replica"]

        def gauge(name: str, text: str) -> Gauge:
            return Gauge(name, text, labels, registry=registry, multiprocess_mode="livesum")

        self.cpu = gauge("scrm_process_cpu_seconds", "CPU seconds used by the replica process.")
        self.memory = gauge("scrm_process_resident_memory_bytes", "Resident memory (RSS).")
        self.fds = gauge("scrm_process_open_fds", "Open file descriptors of the process.")
        self.heartbeat = gauge(
            "scrm_replica_heartbeat_timestamp_seconds",
            "Unix time the replica last sampled itself (it is alive).",
        )
        self.up = gauge("scrm_replica_up", "1 while the replica process runs.")
        self.starts = Counter(
            "scrm_replica_starts",
            "Replica processes started, by deployment.",
            ["deployment"],
            registry=registry,
        )
        self.starts.labels(deployment).inc()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.sample()

    def sample(self) -> None:
        values = sample_self()
        labels = (self.deployment, self.replica)
        self.cpu.labels(*labels).set(values["cpu"])
        self.memory.labels(*labels).set(values["rss"])
        self.fds.labels(*labels).set(values["fds"])
        self.heartbeat.labels(*labels).set(time.time())
        self.up.labels(*labels).set(1)

    def start(self) -> Telemetry:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="telemetry", daemon=True)
            self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            try:
                self.sample()
            except OSError:  # /proc briefly unreadable: try at the next tick
                continue

    def stop(self) -> None:
        self.stopped.set()
