"""Security metrics of the gateway: authentication failures, denials by route and tenant,
rate-limit hits, bad webhook signatures, unmask and erasure events.

Two sources, each counting what only it sees: the privacy guard calls `SecurityMetrics.notify`
(its `observer`; privacy stays a leaf and imports nothing of ours), and `SecurityWatch`, an
ASGI middleware around the whole app, counts what never reaches the guard (vendor webhook
signatures refused with 401, per-address 429s on public routes) and opened WebSockets. Labels
are routes (templates, not paths), tenants, actions and status codes: all bounded sets; never
a customer or subject id.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter

SIGNED_CHANNELS = ("wecom", "dingtalk")


def route_of(scope: dict[str, Any]) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class SecurityMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        registry = registry if registry is not None else CollectorRegistry()

        def counter(name: str, text: str, labels: list[str]) -> Counter:
            return Counter(name, text, labels, registry=registry)

        self.auth_failures = counter(
            "scrm_security_auth_failures",
            "Requests refused for a missing or bad credential.",
            ["route", "status"],
        )
        self.denied = counter(
            "scrm_security_denied",
            "Requests the access policy denied.",
            ["route", "tenant", "action"],
        )
        self.rate_limited = counter(
            "scrm_security_rate_limited", "Requests refused with 429.", ["route", "scope"]
        )
        self.bad_signatures = counter(
            "scrm_security_bad_signatures",
            "Vendor webhooks refused for a bad signature.",
            ["channel"],
        )
        self.unmask = counter(
            "scrm_security_unmask",
            "Requests to reveal masked personal data.",
            ["tenant", "outcome"],
        )
        self.erasures = counter(
            "scrm_security_erasures", "Customer erasures carried out.", ["tenant"]
        )

    def notify(self, kind: str, **labels: str) -> None:
        """The privacy guard's observer: one security-relevant event."""
        get = lambda key: str(labels.get(key) or "unknown")  # noqa: E731
        if kind == "auth_failure":
            self.auth_failures.labels(get("route"), get("status")).inc()
        elif kind == "denied":
            self.denied.labels(get("route"), get("tenant"), get("action")).inc()
        elif kind == "rate_limited":
            self.rate_limited.labels(get("route"), labels.get("scope", "subject")).inc()
        elif kind == "unmask":
            self.unmask.labels(get("tenant"), get("outcome")).inc()
        elif kind == "erasure":
            self.erasures.labels(get("tenant")).inc()


class SecurityWatch:
    """ASGI middleware: 401s on signed vendor webhooks, 429s of the per-address limiter on
    public routes (the guard sees neither), and WebSocket connections by route."""

    def __init__(
        self,
        app: Any,
        security: SecurityMetrics,
        websockets: Any,
        public_paths: frozenset[str] = frozenset(),
    ):
        self.app, self.security, self.websockets = app, security, websockets
        self.public_paths = public_paths

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        opened = False

        async def watch(message: dict) -> None:
            nonlocal opened
            kind = message.get("type")
            if kind == "http.response.start":
                self.observe(scope, int(message.get("status", 0)))
            elif kind in ("websocket.accept", "websocket.close") and not opened:
                opened = True
                outcome = "accepted" if kind == "websocket.accept" else "refused"
                self.websockets.labels(route_of(scope), outcome).inc()
            await send(message)

        await self.app(scope, receive, watch)

    def observe(self, scope: dict, status: int) -> None:
        path = scope.get("path", "")
        parts = path.strip("/").split("/")
        signed = len(parts) > 2 and parts[:2] == ["v1", "channels"] and parts[2] in SIGNED_CHANNELS
        if status == 401 and signed:
            self.security.bad_signatures.labels(parts[2]).inc()
        if status == 429 and path in self.public_paths:
            self.security.rate_limited.labels(path, "address").inc()
