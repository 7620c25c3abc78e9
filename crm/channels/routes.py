"""The channel routes as a FastAPI `APIRouter`, for the gateway to include.

The routes close over two things the gateway replica owns: the `ChannelService` (adapters,
identity map, intake log) and the message handler (the dialogue):

    api.include_router(channel_router(service, conversation.handle, ...guards))

| route | what |
|---|---|
| `GET /v1/channels/wecom/messages` | WeCom URL verification: the decrypted `echostr` |
| `POST /v1/channels/{channel}/messages` | a vendor message (wecom, dingtalk, web_chat) |
| `PUT /v1/channels/{channel}/identities/{sender_id}` | bind a sender to a CRM customer id |
| `POST /v1/channels/web_chat/sessions` | a server-chosen session and its signed token |
| `GET /v1/channels/web_chat/sessions/{session_id}` | the session's recent transcript |
| `WS /v1/channels/web_chat/ws?session_token=...` | web chat over a socket, resumed by token |
"""

# No `from __future__ import annotations`: FastAPI must see real types on the routes.
import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, WebSocket
from fastapi import Path as PathParam
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from crm.channels.errors import ERRORS, http_error
from crm.channels.feedback_routes import add_feedback_route
from crm.channels.router import UnsupportedChannel
from crm.channels.service import ChannelService
from crm.channels.webchat_routes import add_web_chat_routes
from crm.channels.wecom import field
from crm.channels.wecom_media import media_reply
from crm.messages import (
    ChannelAuthError,
    ChannelNotConfigured,
    InboundMessage,
    IntakeUnavailable,
    MessageHandler,
    RawRequest,
)
from privacy.hostile import PATH_TEXT
from settings.channels import WebChatSettings

SENDER_ID = PathParam(min_length=1, max_length=128, pattern=PATH_TEXT)


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
    session_guard: Callable[..., Any] | None = None,
    web_chat: WebChatSettings | None = None,
    webhook_guard: Callable[..., Any] = _open,
    feedback_publish: Callable[[list], Any] | None = None,
    feedback_tenant: Callable[[], str] | None = None,
) -> APIRouter:
    """The channel routes over `service` (adapters, identity map, intake) and `handler` (the
    dialogue). The gateway passes its access checks (crm/access.py):
    `message_guard` runs before a message is read (it lets vendor webhooks through: their
    signatures are verified by the adapter before parsing), `history_guard` protects the
    transcript, `socket_guard(socket)` returns why a socket may not chat (None: it may),
    `identity_guard` admits who may bind identities (the CRM, supervisors, admins),
    `session_guard` opens a web chat session (returns the token and its grant),
    `webhook_guard` rate-limits the unauthenticated WeCom URL check per address."""
    router = APIRouter(prefix="/v1/channels", tags=["channels"])
    add_message_routes(router, service, handler, message_guard, webhook_guard)
    add_identity_route(router, service, identity_guard)
    add_web_chat_routes(router, service, handler, history_guard, socket_guard, session_guard,
                        web_chat)  # fmt: skip
    # Thumbs/CSAT on web chat, guarded like the session's transcript (`feedback_publish`:
    # the bus's blocking publish; None answers 503).
    add_feedback_route(
        router,
        lambda session_id: service.identity.lookup(
            (feedback_tenant or (lambda: "default"))(), "web_chat", session_id
        ),
        history_guard,
        feedback_publish,
        feedback_tenant or (lambda: "default"),
    )
    return router


def add_message_routes(
    router: APIRouter,
    service: ChannelService,
    handler: MessageHandler,
    guard: Callable[..., Any],
    webhook_guard: Callable[..., Any] = _open,
) -> None:
    """WeCom's URL check and every channel's inbound message."""

    @router.get(
        "/wecom/messages",
        response_class=PlainTextResponse,
        responses=ERRORS,
        dependencies=[Depends(webhook_guard)],
    )
    async def wecom_verify(request: Request) -> PlainTextResponse:
        """WeCom URL verification: check msg_signature, answer the decrypted echostr."""
        try:
            adapter = service.adapter("wecom")
            echo = adapter.verify(await raw_request(request, service.max_body_bytes))
        except (ChannelAuthError, ChannelNotConfigured, ValueError) as error:
            raise http_error(error) from None
        return PlainTextResponse(echo)

    @router.post("/{channel}/messages", responses=ERRORS, dependencies=[Depends(guard)])
    async def channel_message(channel: str, request: Request) -> Response:
        """A vendor message, verified, logged durably, answered in the vendor's format."""
        try:
            adapter = service.adapter(channel)
            raw = await raw_request(request, service.max_body_bytes)
            grant = getattr(request.state, "chat_grant", None)
            if channel == "wecom":
                plain, nonce = adapter.open(raw)
                if field(plain, "MsgType") == "event" and field(plain, "Event") != "click":
                    answer = await wecom_event(service, adapter, plain, nonce, handler)
                    return Response(answer.body, answer.status_code, media_type=answer.media_type)
                message = adapter.message_of(plain, nonce)
            else:
                message = adapter.accept(raw, grant) if grant is not None else adapter.accept(raw)
            answer_with = handler
            if message.context.get("media_id"):  # stored sealed, answered by an acknowledgement
                message = await service.keep_media(message)
                answer_with = media_reply(handler)
            outcome = await service.submit(message, answer_with)
        except (UnsupportedChannel, ChannelAuthError, ChannelNotConfigured, ValueError,
                PermissionError, IntakeUnavailable) as error:  # fmt: skip
            raise http_error(error) from None
        answer = adapter.respond(outcome.message, outcome.reply)
        return Response(answer.body, answer.status_code, media_type=answer.media_type)


async def wecom_event(
    service: ChannelService, adapter: Any, plain: Any, nonce: str, handler: MessageHandler
) -> Any:
    """kf pulls, contact and tag events (empty 200); subscribe/enter_agent: a welcome."""
    reply = await service.wecom_event(plain, handler)
    member = InboundMessage(channel="wecom", sender_id=field(plain, "FromUserName") or "",
                            text="", message_id="event", context={"nonce": nonce})  # fmt: skip
    return adapter.respond(member, reply)


def add_identity_route(
    router: APIRouter, service: ChannelService, guard: Callable[..., Any]
) -> None:
    @router.put(
        "/{channel}/identities/{sender_id}",
        responses=ERRORS,
        dependencies=[Depends(guard)],
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
        except (UnsupportedChannel, ChannelNotConfigured, PermissionError) as error:
            raise http_error(error) from None
        return {
            "customer_id": body.customer_id,
            "identities": [{"channel": c, "sender_id": s} for c, s in identities],
        }
