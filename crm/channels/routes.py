"""The channel routes as a FastAPI `APIRouter`, for the gateway to include.

The routes close over two things the gateway replica owns: the `ChannelService` (adapters,
identity map, intake log) and the message handler (the dialogue):

    api.include_router(channel_router(service, conversation.handle, ...guards))

| route | what |
|---|---|
| `GET /v1/channels/wecom/messages` | WeCom URL verification: the decrypted `echostr` |
| `POST /v1/channels/{channel}/messages` | a vendor message (wecom, dingtalk, web_chat) |
| `PUT /v1/channels/{channel}/identities/{sender_id}` | bind a sender to a CRM customer id |
| `GET /v1/channels/web_chat/sessions/{session_id}` | the session's recent transcript |
| `WS /v1/channels/web_chat/ws?session_id=...` | web chat over a socket, resumed by session |
"""

# No `from __future__ import annotations`: FastAPI must see real types on the routes.
import asyncio
import json
from collections.abc import Callable
from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, Depends, HTTPException, Request, WebSocket
from fastapi import Path as PathParam
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.websockets import WebSocketDisconnect

from crm.channels.router import UnsupportedChannel
from crm.channels.service import ChannelService
from crm.channels.webchat import WebChatAdapter
from crm.messages import (
    ChannelAuthError,
    ChannelNotConfigured,
    MessageHandler,
    RawRequest,
    TooLarge,
)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"example": {"detail": text}}}}
    for code, text in {
        400: "Unsupported channel: fax; supported: dingtalk, web_chat, wecom",
        401: "WeCom msg_signature does not match",
        413: "body has 70000 bytes; at most 65536 accepted",
        422: "session_id: Field required",
        503: "Channel wecom is not configured: set SCRM_WECOM_TOKEN, ...",
    }.items()
}
SESSION_ID = PathParam(min_length=1, max_length=128)
SENDER_ID = PathParam(min_length=1, max_length=128)


class IdentityLink(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: str = Field(min_length=1, max_length=64, pattern=r"^[\w-]+$")
    # The vendor organisation the sender id belongs to (the identity map's tenant), not the
    # platform tenant of the caller (which the gateway's guard checks).
    corp_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="WeCom corp id, DingTalk chatbotCorpId; default: the channel's own.",
    )


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
    if isinstance(error, ChannelNotConfigured):
        return HTTPException(503, str(error))
    if isinstance(error, ValidationError):
        return HTTPException(422, readable(error))
    if isinstance(error, ValueError):
        return HTTPException(413 if isinstance(error, TooLarge) else 422, str(error))
    raise error


async def raw_request(request: Request, limit: int) -> RawRequest:
    body = await request.body()
    if len(body) > limit:
        raise HTTPException(413, f"body has {len(body)} bytes; at most {limit} accepted")
    return RawRequest(dict(request.query_params), dict(request.headers), body)


def _open(request: Request) -> None:
    return None


def channel_router(
    service: ChannelService,
    handler: MessageHandler,
    message_guard: Callable[..., Any] = _open,
    history_guard: Callable[..., Any] = _open,
    socket_guard: Callable[[WebSocket], str | None] | None = None,
    identity_guard: Callable[..., Any] = _open,
) -> APIRouter:
    """The channel routes over `service` (adapters, identity map, intake) and `handler` (the
    dialogue). The gateway passes its access checks (crm/access.py):
    `message_guard` runs before a message is read (it lets vendor webhooks through: their
    signatures are verified by the adapter before parsing), `history_guard` protects the
    transcript, `socket_guard(socket)` returns why a socket may not chat (None: it may),
    `identity_guard` admits who may bind identities (the CRM, supervisors, admins)."""
    router = APIRouter(prefix="/v1/channels", tags=["channels"])

    @router.get("/wecom/messages", response_class=PlainTextResponse, responses=ERRORS)
    async def wecom_verify(request: Request) -> PlainTextResponse:
        """WeCom URL verification: check msg_signature, answer the decrypted echostr."""
        try:
            adapter = service.adapter("wecom")
            echo = adapter.verify(await raw_request(request, service.max_body_bytes))
        except (ChannelAuthError, ChannelNotConfigured, ValueError) as error:
            raise http_error(error) from None
        return PlainTextResponse(echo)

    @router.post("/{channel}/messages", responses=ERRORS, dependencies=[Depends(message_guard)])
    async def channel_message(channel: str, request: Request) -> Response:
        """A vendor message, verified, logged durably, answered in the vendor's format."""
        try:
            adapter = service.adapter(channel)
            message = adapter.accept(await raw_request(request, service.max_body_bytes))
            outcome = await service.submit(message, handler)
        except (UnsupportedChannel, ChannelAuthError, ChannelNotConfigured, ValueError) as error:
            raise http_error(error) from None
        answer = adapter.respond(outcome.message, outcome.reply)
        return Response(answer.body, answer.status_code, media_type=answer.media_type)

    @router.put(
        "/{channel}/identities/{sender_id}",
        responses=ERRORS,
        dependencies=[Depends(identity_guard)],
    )
    async def link_identity(
        channel: str,
        sender_id: Annotated[str, SENDER_ID],
        body: IdentityLink,
    ) -> dict[str, Any]:
        """Bind a channel identity (a WeCom userid, a web chat session...) to a CRM customer id,
        so the customer's conversation continues on any of their channels. The caller vouches
        for the binding (a verified login, a bound phone): the gateway's guard must admit only
        the CRM or administrators here."""
        try:
            identities = await asyncio.to_thread(
                service.link, channel, sender_id, body.customer_id, body.corp_id
            )
        except (UnsupportedChannel, ChannelNotConfigured) as error:
            raise http_error(error) from None
        return {
            "customer_id": body.customer_id,
            "identities": [{"channel": c, "sender_id": s} for c, s in identities],
        }

    @router.get(
        "/web_chat/sessions/{session_id}", responses=ERRORS, dependencies=[Depends(history_guard)]
    )
    async def web_chat_history(session_id: Annotated[str, SESSION_ID]) -> dict[str, Any]:
        """The session's recent transcript (what a reconnecting client replays)."""
        history = await asyncio.to_thread(service.history, session_id)
        return {"session_id": session_id, "history": history}

    @router.websocket("/web_chat/ws")
    async def web_chat_socket(socket: WebSocket) -> None:
        """Web chat over a WebSocket; reconnecting with the same session_id resumes it.

        Server frames: {"type": "session", "session_id", "history": [...]} once, then one
        {"type": "reply", ...} or {"type": "error", "detail"} per client frame
        {"text", "message_id"?, "customer_id"?}, and {"type": "message", "role", "text"}
        whenever an agent (or the worker) writes to the session.
        """
        await socket.accept()
        if socket_guard is not None and (refused := socket_guard(socket)):
            await socket.close(code=1008, reason=refused[:120])
            return
        session_id = socket.query_params.get("session_id") or uuid4().hex
        if len(session_id) > 128:
            await socket.close(code=1008, reason="session_id: at most 128 characters")
            return
        adapter: WebChatAdapter = service.adapter(WebChatAdapter.name)  # type: ignore[assignment]
        history = await asyncio.to_thread(service.history, session_id)
        await socket.send_json({"type": "session", "session_id": session_id, "history": history})
        service.attach(session_id, socket.send_json)  # agent replies and notices arrive here
        try:
            while True:
                frame = await socket.receive_text()
                await socket.send_json(
                    await _socket_turn(frame, session_id, adapter, service, handler)
                )
        except WebSocketDisconnect:
            return
        finally:
            service.detach(session_id, socket.send_json)

    return router


async def _socket_turn(
    frame: str,
    session_id: str,
    adapter: WebChatAdapter,
    service: ChannelService,
    handler: MessageHandler,
) -> dict[str, Any]:
    try:
        payload = json.loads(frame)
        if not isinstance(payload, dict):
            raise ValueError("frame: expected a JSON object with text")
        message = adapter.parse({**payload, "session_id": session_id})
        outcome = await service.submit(message, handler)
    except json.JSONDecodeError:
        return {"type": "error", "detail": "frame: not valid JSON"}
    except ValidationError as error:
        return {"type": "error", "detail": readable(error)}
    except ValueError as error:
        return {"type": "error", "detail": str(error)}
    return {
        "type": "reply",
        **adapter.reply_body(outcome.message, outcome.reply),
        "duplicate": outcome.duplicate,
    }
