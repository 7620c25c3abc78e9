"""Monitoring of the monitoring: which routes, models and bus consumers no metric covers.

Read from a real scrape (Prometheus text), not from code: a route is covered when requests to
it are counted under its template (`scrm_requests_total{route}`, or
`scrm_websocket_connections_total{route}` for a socket), a model when its answers are
(`scrm_model_answers_total{model}` from the replica, or `scrm_model_batch_size{model}` from
the gateway), a consumer when its lag is (`scrm_bus_consumer_lag_events{consumer}`). The
tests drive every route, model and consumer and fail on anything left uncovered.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

# One family per dimension that a healthy scrape of the running application always shows.
DIMENSIONS = {
    "system": ("scrm_process_resident_memory_bytes", "scrm_process_open_fds",
               "scrm_process_cpu_seconds", "scrm_replica_heartbeat_timestamp_seconds",
               "scrm_requests_in_flight", "scrm_bus_consumer_lag_events"),
    "business": ("scrm_business_messages", "scrm_business_sessions"),
    "ai": ("scrm_model_answers", "scrm_model_confidence", "scrm_model_latency_seconds"),
    "security": ("scrm_security_auth_failures", "scrm_security_denied"),
}  # fmt: skip
MODEL_FAMILIES = ("scrm_model_answers", "scrm_model_batch_size")


def label_values(exposition: str | bytes) -> dict[str, list[dict[str, str]]]:
    """family name -> the label sets of its samples."""
    if isinstance(exposition, bytes):
        exposition = exposition.decode()
    found: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(exposition):
        found.setdefault(family.name, []).extend(dict(s.labels) for s in family.samples)
    return found


def covered(found: dict[str, list[dict[str, str]]], families: Iterable[str], label: str) -> set:
    return {labels.get(label) for name in families for labels in found.get(name, [])}


def uncovered_routes(app: Any, exposition: str | bytes) -> list[str]:
    """Routes of `app` (HTTP and WebSocket) with no request counted under their template."""
    from starlette.routing import WebSocketRoute

    from crm.access import flat_routes

    found = label_values(exposition)
    http = covered(found, ["scrm_requests"], "route")
    sockets = covered(found, ["scrm_websocket_connections"], "route")
    missing = []
    for path, route, _ in flat_routes(app.routes):
        seen = sockets if isinstance(route, WebSocketRoute) else http
        if path not in seen:
            missing.append(path)
    return sorted(set(missing))


def uncovered_models(models: Iterable[str], exposition: str | bytes) -> list[str]:
    seen = covered(label_values(exposition), MODEL_FAMILIES, "model")
    return sorted(m for m in models if m not in seen)


def uncovered_consumers(consumers: Iterable[str], exposition: str | bytes) -> list[str]:
    seen = covered(label_values(exposition), ["scrm_bus_consumer_lag_events"], "consumer")
    return sorted(c for c in consumers if c not in seen)


def missing_dimensions(exposition: str | bytes) -> dict[str, list[str]]:
    """Per dimension, the families the scrape lacks (empty when all four are there)."""
    names = set(label_values(exposition))
    gaps = {dim: [f for f in families if f not in names] for dim, families in DIMENSIONS.items()}
    return {dim: gap for dim, gap in gaps.items() if gap}
