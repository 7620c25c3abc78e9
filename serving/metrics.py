"""Prometheus metrics of the gateway, served at /metrics.

The gateway sees every request and every answer (which carries the model version and the batch
size it was scored in), so one registry there covers request count, latency, batch size and the
version each model answers with, without depending on Ray's metrics agent being exported.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1, 2, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
        )

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_answer(self, model: str, answer: dict) -> None:
        self.batch_size.labels(model).observe(answer.get("batch_size", 1))
        version = str(answer.get("model_version", ""))
        if version.isdigit():
            self.version.labels(model, answer.get("variant", "champion")).set(int(version))

    def render(self) -> bytes:
        return generate_latest(self.registry)
