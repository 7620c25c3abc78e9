"""Hostile text refused at the edge, before any route, store or writer thread sees it.

Python's `json` accepts what no store downstream can hold: a lone surrogate (`"\\ud800"`)
becomes a `str` that sqlite cannot encode (one of them killed the prediction-log writer), a NUL
truncates C strings, a 10,000-deep array exhausts the recursion limit (a 500), bytes that are
not UTF-8 get replaced or crash a decoder. `check_json_bytes` and `check_text` refuse them with
one readable line; `HostileInput` is the ASGI middleware that applies them to every JSON body
(4xx, before FastAPI parses it); the web chat socket applies them to every frame.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from privacy.limits import send_refusal

MAX_DEPTH = 32
# C0 controls but tab, newline, carriage return; DEL; lone surrogates.
FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|[\ud800-\udfff]")
# A path parameter a route stores (`Path(pattern=PATH_TEXT)`): no control character, and no
# U+FFFD, which is what invalid UTF-8 in a URL (a lone surrogate's bytes) is decoded to; the
# body middleware never sees paths (issue 26).
PATH_TEXT = r"^[^\x00-\x1f\x7f\uFFFD]+$"


NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def iso_time(value: Any) -> Any:
    """A pydantic before-validator for documented ISO 8601 date-times: pydantic reads a number,
    or a string of one, as Unix seconds (`since=0.2`, `at: -48207` became 1970 and 1969;
    issue 26)."""
    if isinstance(value, bool | int | float) or (
        isinstance(value, str) and NUMBER.fullmatch(value)
    ):
        raise ValueError("an ISO 8601 date-time expected, e.g. 2026-12-06T03:00:00Z")
    return value


class HostileText(ValueError):
    """Input no store may receive; `status` is the HTTP answer (400 or 422)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def check_text(text: str, where: str = "text", max_chars: int | None = None) -> str:
    """`text` if it is safe to store; HostileText otherwise."""
    if max_chars is not None and len(text) > max_chars:
        raise HostileText(f"{where}: {len(text)} characters; at most {max_chars}", 413)
    found = FORBIDDEN.search(text)
    if found:
        char = found.group()
        kind = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
        raise HostileText(f"{where}: contains {kind} (U+{ord(char):04X}) at {found.start()}")
    return text


def json_depth(raw: str) -> int:
    """The nesting depth of a JSON document, without parsing it (no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in raw:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def check_value(value: Any, where: str = "body") -> None:
    """Every string (keys too) of a parsed JSON value is safe; iterative, no recursion."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, str):
            check_text(item, at)
        elif isinstance(item, dict):
            for key, inner in item.items():
                check_text(key, f"{at} key")
                stack.append((inner, f"{at}.{key}"[:80]))
        elif isinstance(item, list):
            stack.extend((inner, f"{at}[{i}]") for i, inner in enumerate(item))


def check_json_text(raw: str, max_depth: int = MAX_DEPTH, where: str = "body") -> Any:
    """Parse a JSON document that passed the checks: depth, then every string."""
    if (depth := json_depth(raw)) > max_depth:
        raise HostileText(f"{where}: JSON nested {depth} deep; at most {max_depth}")
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as error:
        raise HostileText(f"{where}: not valid JSON ({getattr(error, 'msg', error)})") from None
    check_value(value, where)
    return value


def check_json_bytes(body: bytes, max_depth: int = MAX_DEPTH, where: str = "body") -> Any:
    """A JSON body: strict UTF-8, bounded depth, no lone surrogate, NUL or control char."""
    try:
        raw = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise HostileText(f"{where}: not valid UTF-8 at byte {error.start}", 400) from None
    return check_json_text(raw, max_depth, where)


def is_json(headers: dict[bytes, bytes]) -> bool:
    kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    return kind == b"application/json" or kind.endswith(b"+json")


class HostileInput:
    """ASGI middleware: JSON bodies (by content type, or a body that opens like JSON) are
    checked whole before the route parses them; a refused one is a 4xx with a `detail`."""

    def __init__(self, app: Any, max_depth: int = MAX_DEPTH,
                 on_refused: Callable[[str], None] | None = None):  # fmt: skip
        self.app, self.max_depth, self.on_refused = app, max_depth, on_refused

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = dict(scope.get("headers") or [])
        if body and (is_json(headers) or body.lstrip()[:1] in (b"{", b"[")):
            try:
                check_json_bytes(body, self.max_depth)
            except HostileText as error:
                if self.on_refused is not None:
                    self.on_refused(str(error))
                await send_refusal(scope, send, error.status, str(error))
                return
        await self.app(scope, _replay([{"type": "http.request", "body": body}], receive), send)


def _replay(messages: list[dict], then: Callable | None = None) -> Callable:
    async def receive() -> dict:
        if messages:
            return messages.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive
