"""Defence in depth: mask every JSON response at the caller's level, even if a route forgot.

`MaskJsonResponses` is a pure ASGI middleware. After a route guarded by `Guard.require` has
run, the caller's `Access` is in the request state; a JSON response is then masked at its
level. Masking is idempotent (a masked value no longer matches a detector), so a route that
already called `access.mask` is unaffected. Values released by `Guard.reveal` (audited) are
left as they are. Responses of unguarded routes are masked at `default_level` (None: not).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from privacy.masking import FIELD_KINDS, mask_payload


class MaskJsonResponses:
    def __init__(self, app: Any, default_level: str | None = None):
        self.app, self.default_level = app, default_level

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        start: dict | None = None
        chunks: list[bytes] = []

        async def buffered_send(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                if not is_json(message):
                    await send(message)
                return
            if start is None or not is_json(start) or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = self.masked(b"".join(chunks), state)
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, buffered_send)

    def masked(self, body: bytes, state: dict) -> bytes:
        access = state.get("access")
        if state.get("revealed"):
            return body
        level = access.masking if access is not None else self.default_level
        if level is None or not body:
            return body
        try:
            payload = json.loads(body)
        except ValueError:
            return body
        masked = mask_payload(payload, level, FIELD_KINDS)
        return json.dumps(masked, ensure_ascii=False, separators=(",", ":")).encode()


def is_json(start: dict) -> bool:
    for key, value in start.get("headers", []):
        if key.lower() == b"content-type":
            return value.split(b";")[0].strip().lower() == b"application/json"
    return False
