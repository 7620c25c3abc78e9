"""The web chat routes: opening a session, the transcript a reconnecting client replays, and
chat over a socket.

A session is the server's: `POST /v1/channels/web_chat/sessions` chooses its id and binds it
to the caller's customer in a signed, expiring token (privacy/sessions.py). Every message,
socket and frame presents the token; nothing a client writes chooses the session or the
customer. A socket lives as long as the conversation: the server pings it every
`heartbeat_s`, closes it after `idle_timeout_s` without a frame, and refuses frames over
`max_frame_bytes` (1009) before parsing them; a dropped client resumes with its token.
"""

# No `from __future__ import annotations`: FastAPI must see real types on the routes.
import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, WebSocket
from fastapi import Path as PathParam
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from crm.channels.errors import ERRORS, readable
from crm.channels.service import ChannelService
from crm.channels.webchat import SessionMismatch, WebChatAdapter
from crm.messages import IntakeUnavailable, MessageHandler
from privacy.hostile import HostileText, check_json_text
from settings.channels import WebChatSettings

SESSION_ID = PathParam(min_length=1, max_length=128)


def add_web_chat_routes(
    router: APIRouter,
    service: ChannelService,
    handler: MessageHandler,
    history_guard: Callable[..., Any],
    socket_guard: Callable[[WebSocket], Any] | None,
    session_guard: Callable[..., Any] | None = None,
    config: WebChatSettings | None = None,
) -> None:
    config = config or WebChatSettings()
    if session_guard is not None:

        @router.post("/web_chat/sessions", responses=ERRORS)
        async def open_web_chat_session(
            opened: Annotated[Any, Depends(session_guard)],
        ) -> dict[str, Any]:
            """A new web chat session (or `{"resume": token}`: the same one renewed), bound to
            the caller's customer; send the token as X-Chat-Session (or ?session_token= on
            the socket)."""
            token, grant = opened
            await asyncio.to_thread(
                service.identity.link, grant.tenant, WebChatAdapter.name, grant.session_id,
                grant.customer_id,
            )  # fmt: skip
            return {
                "session_id": grant.session_id,
                "session_token": token,
                "customer_id": grant.customer_id,
                "expires_at": grant.expires_at,
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
        """Web chat over a WebSocket: `?session_token=` (and a credential) open it.

        Server frames: {"type": "session", "session_id", "history": [...]} once, then one
        {"type": "reply", ...} or {"type": "error", "detail"} per client frame
        {"text", "message_id"?}, {"type": "message", "role", "text"} whenever an agent (or the
        worker) writes to the session, and {"type": "ping"} when idle.
        """
        await socket.accept()
        caller = socket_guard(socket) if socket_guard is not None else "no access control"
        if isinstance(caller, str):
            await socket.close(code=1008, reason=caller[:120])
            return
        session_id = caller.grant.session_id
        adapter: WebChatAdapter = service.adapter(WebChatAdapter.name)  # type: ignore[assignment]
        history = await asyncio.to_thread(service.history, session_id)
        caller.audit_replay(len(history))
        await socket.send_json({"type": "session", "session_id": session_id, "history": history})
        service.attach(session_id, socket.send_json)  # agent replies and notices arrive here
        try:
            await _serve_frames(socket, caller, adapter, service, handler, config)
        except WebSocketDisconnect:
            return
        finally:
            service.detach(session_id, socket.send_json)


async def _serve_frames(
    socket: WebSocket,
    caller: Any,
    adapter: WebChatAdapter,
    service: ChannelService,
    handler: MessageHandler,
    config: WebChatSettings,
) -> None:
    """Frames until the client leaves or stays silent for `idle_timeout_s` (pings meanwhile)."""
    loop = asyncio.get_running_loop()
    last_seen = loop.time()
    while True:
        try:
            message = await asyncio.wait_for(socket.receive(), config.heartbeat_s)
        except TimeoutError:
            if loop.time() - last_seen > config.idle_timeout_s:
                await socket.close(code=1000, reason="idle: resume with the session token")
                return
            await socket.send_json({"type": "ping"})
            continue
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        last_seen = loop.time()
        frame = message.get("text")
        if frame is None:
            frame = (message.get("bytes") or b"").decode("utf-8", "replace")
        if len(frame.encode("utf-8", "surrogatepass")) > config.max_frame_bytes:
            await socket.close(code=1009, reason=f"frame over {config.max_frame_bytes} bytes")
            return
        if refused := caller.frame_refused():
            await socket.send_json({"type": "error", "status": 429, "detail": refused})
            continue
        answer = await _socket_turn(frame, caller, adapter, service, handler)
        if answer.get("type") == "pong":
            continue
        await socket.send_json(answer)


async def _socket_turn(
    frame: str,
    caller: Any,
    adapter: WebChatAdapter,
    service: ChannelService,
    handler: MessageHandler,
) -> dict[str, Any]:
    try:
        payload = check_json_text(frame, where="frame")
        if not isinstance(payload, dict):
            raise ValueError("frame: expected a JSON object with text")
        if payload.get("type") == "pong":
            return {"type": "pong"}
        message = adapter.parse(payload, caller.grant)
        outcome = await service.submit(message, handler)
    except SessionMismatch as error:
        with contextlib.suppress(Exception):
            caller.audit_refused(str(error))
        return {"type": "error", "status": 403, "detail": str(error)}
    except HostileText as error:
        return {"type": "error", "status": error.status, "detail": str(error)}
    except json.JSONDecodeError:
        return {"type": "error", "status": 422, "detail": "frame: not valid JSON"}
    except ValidationError as error:
        return {"type": "error", "status": 422, "detail": readable(error)}
    except ValueError as error:
        return {"type": "error", "status": 422, "detail": str(error)}
    except IntakeUnavailable as error:  # not stored: the client resends the same message id
        return {"type": "error", "status": 503, "detail": str(error)}
    return {
        "type": "reply",
        **adapter.reply_body(outcome.message, outcome.reply),
        "duplicate": outcome.duplicate,
    }
