"""Prometheus metrics of the gateway, served at /metrics, aggregated over every process.

Ray Serve replicas are separate processes, so a registry per process would show a scrape one
replica. When the server starts (`scrm serve`) it gives every replica the environment variable
PROMETHEUS_MULTIPROC_DIR (settings `monitoring.multiproc_dir`, emptied at start): each
process's metric values then live in memory-mapped files there, and the gateway's /metrics
reads them all with prometheus_client's MultiProcessCollector, the gateway, Conversation and
model replicas alike. Without that variable (unit tests, one process) a private registry per
`Metrics` is rendered as before. Multiprocess mode is only used when the variable was set when
prometheus_client was imported in this process (its value class is chosen at import).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1, 2, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LIVE_FILE = re.compile(r"^gauge_live\w*?_(\d+)\.db$")


def multiprocess_dir() -> str | None:
    """The shared directory when this process writes multiprocess metrics, else None."""
    from prometheus_client import values

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path and values.ValueClass.__name__ != "MutexValue":
        return path
    return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune_dead(path: str) -> list[int]:
    """Drop the live-gauge files of processes that are gone (a replaced replica's memory and
    heartbeat must not linger); their counters stay, so totals never go backwards."""
    from prometheus_client import multiprocess

    dead = set()
    for name in os.listdir(path):
        if (match := LIVE_FILE.match(name)) and not alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in dead:
        multiprocess.mark_process_dead(pid, path)
    return sorted(dead)


def reset_multiproc_dir(path: Path) -> None:
    """Empty the shared directory: what `scrm serve` does before any replica starts."""
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.db"):
        old.unlink(missing_ok=True)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.collectors: list[Any] = []  # custom collectors asked at each scrape (bus lag)
        self.requests = Counter(
            "scrm_requests",
            "HTTP requests by route and status code.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "scrm_request_latency_seconds",
            "Gateway latency by route (request in -> response out).",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "scrm_requests_in_flight",
            "Requests the gateway replicas are answering now (the request queue).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.batch_size = Histogram(
            "scrm_model_batch_size",
            "Size of the batch each answered item was scored in, by model.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.version = Gauge(
            "scrm_model_version",
            "Registry version that last answered, by model and variant.",
            ["model", "variant"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.store_latency = Histogram(
            "scrm_store_latency_seconds",
            "Latency of calls to a store (feast, mlflow, event_bus), by store and operation.",
            ["store", "op"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.accuracy = Gauge(
            "scrm_model_online_accuracy",
            "Share of answers confirmed right by feedback, by model and version.",
            ["model", "version"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.websockets = Counter(
            "scrm_websocket_connections",
            "WebSocket connections by route and outcome (accepted, refused).",
            ["route", "outcome"],
            registry=self.registry,
        )

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_answer(self, model: str, answer: dict) -> None:
        self.batch_size.labels(model).observe(answer.get("batch_size", 1))
        version = str(answer.get("model_version", ""))
        if version.isdigit():
            self.version.labels(model, answer.get("variant", "champion")).set(int(version))

    def record_online_accuracy(self, model: str, version: str, accuracy: float) -> None:
        """Feedback-based accuracy of a model version (the feedback code calls this)."""
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"accuracy must be within [0, 1], got {accuracy}")
        self.accuracy.labels(model, str(version)).set(accuracy)

    @contextmanager
    def timed(self, store: str, op: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.store_latency.labels(store, op).observe(time.perf_counter() - started)

    def add_collector(self, collector: Any) -> None:
        """A collector computed at scrape time in this process (not shared through files)."""
        self.registry.register(collector)
        self.collectors.append(collector)

    def render(self) -> bytes:
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        prune_dead(path)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path)
        for collector in self.collectors:
            registry.register(collector)
        return generate_latest(registry)


class TimedStore:
    """A store whose method calls land in `scrm_store_latency_seconds{store, op}`; attributes
    that are not methods pass through."""

    def __init__(self, inner: Any, metrics: Metrics, store: str):
        self._inner, self._metrics, self._store = inner, metrics, store

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if not callable(value) or name.startswith("_"):
            return value
        metrics, store = self._metrics, self._store

        def call(*args: Any, **kwargs: Any) -> Any:
            with metrics.timed(store, name):
                return value(*args, **kwargs)

        return call
