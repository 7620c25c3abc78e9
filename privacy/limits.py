"""Request rate and size limits (OWASP API4: unrestricted resource consumption).

`TokenBucket` limits each subject (429 with Retry-After); `BodySizeLimit` is a pure ASGI
middleware that refuses a body over the limit (413) before FastAPI reads it into memory,
whether it announces a Content-Length or streams chunks; `check_batch` bounds list inputs.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sized
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


REQUEST_ID = re.compile(r"^[\w.-]{1,64}$")


async def send_refusal(
    scope: dict, send: Callable, status: int, detail: str, headers: list | None = None
) -> None:
    """A JSON error from ASGI middleware, shaped like the routes' (`{"detail", "request_id"}`:
    the id Serve's proxy put in the request headers, as the gateway's error handlers use)."""
    given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
    rid = given if REQUEST_ID.match(given) else str(uuid.uuid4())
    body = json.dumps({"detail": detail, "request_id": rid}).encode()
    head = [(b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()), *(headers or [])]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


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
            await self.refuse(send, scope)
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
                await self.refuse(send, scope)

    async def refuse(self, send: Callable, scope: dict | None = None) -> None:
        detail = f"request body over the limit of {self.max_bytes} bytes"
        await send_refusal(scope or {}, send, 413, detail)


class BodyTooLarge(Exception):
    pass


class AddressRateLimit:
    """ASGI middleware: `paths` (routes nobody authenticates: health, metrics) limited per
    client address (429 with Retry-After). `limiter=None` turns it off."""

    def __init__(self, app: Any, limiter: TokenBucket | None, paths: Iterable[str]):
        self.app, self.limiter, self.paths = app, limiter, frozenset(paths)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if self.limiter is None or scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("unknown", 0)
        wait = self.limiter.take(f"public/{client[0]}")
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        await send_refusal(scope, send, 429, "rate limit: too many requests from this address",
                           [(b"retry-after", str(math.ceil(wait)).encode())])  # fmt: skip


class RequestDeadline:
    """ASGI middleware: an HTTP request that takes longer than `seconds` is cancelled (504 if
    nothing was sent yet). The gateway enforces it itself so that Serve's proxy can run
    without `request_timeout_s`, which would otherwise close every WebSocket at that age."""

    def __init__(self, app: Any, seconds: float):
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(self.seconds):
                await self.app(scope, receive, tracking_send)
        except TimeoutError:
            if started:
                return
            await send_refusal(scope, send, 504, f"request took over {self.seconds:g} s")
