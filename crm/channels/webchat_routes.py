"""The web chat routes: the transcript a reconnecting client replays, and chat over a socket."""

# No `from __future__ import annotations`: FastAPI must see real types on the routes.
import asyncio
import json
from collections.abc import Callable
from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, Depends, WebSocket
from fastapi import Path as PathParam
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from crm.channels.errors import ERRORS, readable
from crm.channels.service import ChannelService
from crm.channels.webchat import WebChatAdapter
from crm.messages import MessageHandler

SESSION_ID = PathParam(min_length=1, max_length=128)


def add_web_chat_routes(
    router: APIRouter,
    service: ChannelService,
    handler: MessageHandler,
    history_guard: Callable[..., Any],
    socket_guard: Callable[[WebSocket], str | None] | None,
) -> None:
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
