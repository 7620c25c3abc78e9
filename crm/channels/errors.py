"""How the channel routes answer what goes wrong: one line, the right status."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from pydantic import ValidationError

from crm.channels.router import UnsupportedChannel
from crm.messages import ChannelAuthError, ChannelNotConfigured, IntakeUnavailable, TooLarge

RETRY_AFTER_S = 1  # a message the intake log could not store: the vendor's retry is welcome

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"example": {"detail": text}}}}
    for code, text in {
        400: "Unsupported channel: fax; supported: dingtalk, web_chat, wecom",
        401: "WeCom msg_signature does not match",
        403: "customer_id: a session writes as its own customer only",
        413: "body has 70000 bytes; at most 65536 accepted",
        422: "session_id: Field required",
        503: "Channel wecom is not configured: set SCRM_WECOM_TOKEN, ...",
    }.items()
}


def readable(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ())) or "body"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts)


def http_error(error: Exception) -> HTTPException:
    if isinstance(error, UnsupportedChannel):
        return HTTPException(400, str(error))
    if isinstance(error, ChannelAuthError):
        return HTTPException(401, str(error))
    if isinstance(error, PermissionError):  # a body naming another session or customer
        return HTTPException(403, str(error))
    if isinstance(error, ChannelNotConfigured):
        return HTTPException(503, str(error))
    if isinstance(error, IntakeUnavailable):
        return HTTPException(503, str(error), headers={"Retry-After": str(RETRY_AFTER_S)})
    if isinstance(error, ValidationError):
        return HTTPException(422, readable(error))
    if isinstance(error, ValueError):
        return HTTPException(413 if isinstance(error, TooLarge) else 422, str(error))
    raise error
