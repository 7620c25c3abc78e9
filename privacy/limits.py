"""Request rate and size limits (OWASP API4: unrestricted resource consumption).

`TokenBucket` limits each subject (429 with Retry-After); `BodySizeLimit` is a pure ASGI
middleware that refuses a body over the limit (413) before FastAPI reads it into memory,
whether it announces a Content-Length or streams chunks; `check_batch` bounds list inputs.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Sized
from typing import Any

from fastapi import HTTPException, Request


class TokenBucket:
    """`burst` requests at once, refilled at `rate_per_s`, per key (subject)."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ):
        self.rate, self.burst, self.clock, self.max_keys = rate_per_s, burst, clock, max_keys
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def take(self, key: str, rate: float | None = None, burst: int | None = None) -> float:
        """0 if a request may go now, else the seconds until one may (`rate`/`burst`: this
        key's own limits, e.g. a service key's)."""
        rate, burst = rate or self.rate, burst or self.burst
        now = self.clock()
        with self.lock:
            tokens, last = self.buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - last) * rate)
            if tokens >= 1:
                self.buckets[key] = (tokens - 1, now)
                self._prune(now)
                return 0.0
            self.buckets[key] = (tokens, now)
            return (1 - tokens) / rate

    def _prune(self, now: float) -> None:
        if len(self.buckets) <= self.max_keys:
            return
        full = self.burst / self.rate
        self.buckets = {k: v for k, v in self.buckets.items() if now - v[1] < full}

    def check(self, key: str, rate: float | None = None, burst: int | None = None) -> None:
        """Raise 429 with Retry-After when `key` is over its rate."""
        wait = self.take(key, rate, burst)
        if wait > 0:
            raise HTTPException(
                429,
                detail=f"rate limit: {rate or self.rate:g} requests/s (burst "
                f"{burst or self.burst}); retry later",
                headers={"Retry-After": str(math.ceil(wait))},
            )


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def rate_limited(
    bucket: TokenBucket, key: Callable[[Request], str] = client_address
) -> Callable[[Request], None]:
    """Dependency for routes without the guard (webhooks, health): limit per `key(request)`,
    by default the client address. Guarded routes are limited per subject by the guard."""

    def dependency(request: Request) -> None:
        bucket.check(key(request))

    return dependency


def check_batch(items: Sized, limit: int, what: str = "items") -> None:
    if len(items) > limit:
        raise HTTPException(413, detail=f"{len(items)} {what} in one request; the limit is {limit}")


class BodySizeLimit:
    """ASGI middleware: 413 for request bodies over `max_bytes` (declared or streamed)."""

    def __init__(self, app: Any, max_bytes: int | Callable[[], int]):
        self.app, self.limit = app, max_bytes

    @property
    def max_bytes(self) -> int:
        """The limit; a callable is asked per request (a Serve replica reads its params late)."""
        return self.limit() if callable(self.limit) else self.limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self.refuse(send)
            return
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self.refuse(send)

    async def refuse(self, send: Callable) -> None:
        body = json.dumps(
            {"detail": f"request body over the limit of {self.max_bytes} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    pass
