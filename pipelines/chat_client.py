"""Chat turns over HTTP against a running gateway: the web chat route, one fresh session each.

Shared by `scrm eval dialogue` (the bank scenario report) and `bench/chat.py` (turn latency):
both measure what a customer sees, the whole path gateway -> intake -> models -> dialogue ->
reply, so they go through `POST /v1/channels/web_chat/messages` and time the round trip.
`gateway()` uses a given URL, or starts `scrm serve --detach` on a free port and stops that
server (by the pid it wrote) when done. The API key goes in `X-API-Key` when given.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from settings import Settings

CHAT_ROUTE = "/v1/channels/web_chat/messages"
SESSION_ROUTE = "/v1/channels/web_chat/sessions"
# A throttled turn (429) is retried after Retry-After, at most this many times.
MAX_THROTTLE_RETRIES = 20


class GatewayError(RuntimeError):
    """The gateway cannot be reached, refuses the credentials, or does not become ready."""


@dataclass
class ChatResult:
    index: int
    status: int  # HTTP status of the last attempt; 0: no answer (connection, timeout)
    latency_ms: float  # round trip of the last attempt
    body: dict[str, Any] | None = None
    detail: str | None = None
    throttled: int = 0  # 429 answers before this one
    extra: dict[str, Any] = field(default_factory=dict)


def free_port() -> int:
    """A free 127.0.0.1 port outside the kernel's ephemeral range (32768-60999) and Ray's worker
    range (10002-19999). Ray binds its agents to ephemeral ports as it starts: a port probed
    from that range a moment before was seen taken by Ray itself (the proxy's "Failed to bind")."""
    for _ in range(500):
        port = 20000 + secrets.randbelow(12000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-31999 on 127.0.0.1")


def headers(api_key: str | None) -> dict[str, str]:
    return {"X-API-Key": api_key} if api_key else {}


def wait_ready(url: str, models: tuple[str, ...], timeout_s: float) -> dict[str, Any]:
    """Poll /readyz until `models` are loaded (the gateway answers /healthz before they are)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(f"{url}/readyz", timeout=5).json()
            loaded = last.get("models", {})
            if all(loaded.get(m, {}).get("loaded") for m in models):
                return loaded
        except (httpx.HTTPError, ValueError) as error:
            last = str(error)
        time.sleep(1)
    raise GatewayError(f"{url}: {', '.join(models)} not loaded after {timeout_s:.0f}s ({last})")


@contextlib.contextmanager
def gateway(settings: Settings, url: str | None, timeout_s: float = 600) -> Iterator[str]:
    """`url` if given (it must answer /healthz), else a gateway of this project on a free
    loopback port, started with `scrm serve --detach` and stopped by its pid afterwards."""
    if url:
        url = url.rstrip("/")
        try:
            httpx.get(f"{url}/healthz", timeout=5).raise_for_status()
        except httpx.HTTPError as error:
            raise GatewayError(f"no gateway answers at {url}/healthz ({error})") from None
        yield url
        return
    from pipelines.serve import ServeError, run_dir, start_detached, stop_detached

    try:
        started = start_detached(settings, "127.0.0.1", free_port(), timeout_s)
    except ServeError as error:
        raise GatewayError(f"cannot start a gateway: {error} (or pass --url)") from None
    pid = int((run_dir(settings) / "serve.pid").read_text())
    try:
        yield started
    finally:
        stopped = stop_detached(settings)
        if stopped not in (None, pid):  # the pid file changed hands: not ours to stop
            raise GatewayError(f"pid file names {stopped}, not the gateway started here ({pid})")


async def post_retrying(
    client: httpx.AsyncClient, route: str, body: dict, headers: dict | None = None
) -> tuple[httpx.Response, float, int]:
    """POST, waiting Retry-After on 429 (at most MAX_THROTTLE_RETRIES times): the answer, the
    last attempt's round trip in ms, and how many 429s came before."""
    throttled = 0
    while True:
        started = time.perf_counter()
        answer = await client.post(route, json=body, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        if answer.status_code != 429 or throttled >= MAX_THROTTLE_RETRIES:
            return answer, elapsed, throttled
        throttled += 1
        wait = float(answer.headers.get("retry-after") or 1)
        await asyncio.sleep(min(max(wait, 0.05), 10))


async def send_turn(
    client: httpx.AsyncClient, index: int, text: str, session_prefix: str
) -> ChatResult:
    """One customer message in a new web chat session (a server-issued one, opened first and
    not timed); 429s wait Retry-After and retry. `session_prefix` is kept for callers."""
    body = {"text": text, "message_id": f"{session_prefix}-{index}-{uuid.uuid4().hex[:8]}"}
    try:
        opened, _, _ = await post_retrying(client, SESSION_ROUTE, {})
    except httpx.HTTPError as error:
        return ChatResult(index, 0, 0.0, detail=f"{type(error).__name__}: {error}")
    if opened.status_code != 200:
        try:
            detail = str(opened.json().get("detail"))
        except (ValueError, AttributeError):
            detail = opened.text[:200]
        return ChatResult(index, opened.status_code, 0.0, detail=detail)
    chat = {"X-Chat-Session": opened.json()["session_token"]}
    throttled = 0
    while True:
        started = time.perf_counter()
        try:
            answer = await client.post(CHAT_ROUTE, json=body, headers=chat)
        except httpx.HTTPError as error:
            elapsed = (time.perf_counter() - started) * 1000
            return ChatResult(index, 0, elapsed, detail=f"{type(error).__name__}: {error}")
        elapsed = (time.perf_counter() - started) * 1000
        if answer.status_code == 429 and throttled < MAX_THROTTLE_RETRIES:
            throttled += 1
            wait = float(answer.headers.get("retry-after") or 1)
            await asyncio.sleep(min(max(wait, 0.05), 10))
            continue
        try:
            parsed = answer.json()
        except ValueError:
            parsed = {"detail": answer.text[:200]}
        if answer.status_code == 200:
            return ChatResult(index, 200, elapsed, body=parsed, throttled=throttled)
        detail = str(parsed.get("detail", parsed)) if isinstance(parsed, dict) else str(parsed)
        return ChatResult(index, answer.status_code, elapsed, detail=detail, throttled=throttled)


async def send_all(
    url: str,
    texts: list[str],
    concurrency: int,
    api_key: str | None = None,
    session_prefix: str = "eval",
    on_done: Callable[[ChatResult], None] | None = None,
    timeout_s: float = 30,
) -> list[ChatResult]:
    """Every text as its own conversation, `concurrency` customers writing at once (each
    sends its next message when the previous one is answered)."""
    todo = iter(enumerate(texts))
    results: list[ChatResult | None] = [None] * len(texts)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers=headers(api_key), timeout=timeout_s, limits=limits
    ) as client:

        async def customer() -> None:
            for index, text in todo:
                result = await send_turn(client, index, text, session_prefix)
                results[index] = result
                if on_done is not None:
                    on_done(result)

        await asyncio.gather(*(customer() for _ in range(max(1, concurrency))))
    return [r for r in results if r is not None]


def probe(url: str, api_key: str | None, text: str = "hello") -> ChatResult:
    """One turn before measuring: warms the path and turns a refused credential into one
    readable error instead of thousands of failed turns."""
    result = asyncio.run(send_all(url, [text], 1, api_key, session_prefix="probe"))[0]
    if result.status in (401, 403):
        hint = "check the API key" if api_key else "pass --api-key or set SCRM_API_KEY"
        refused = f"the gateway refused the chat turn ({result.status}: {result.detail})"
        raise GatewayError(f"{refused}; {hint}")
    if result.status != 200:
        raise GatewayError(f"the chat route answered {result.status or 'nothing'}: {result.detail}")
    return result
