"""The agent desk's live updates: a console-only WebSocket that says "the desk changed" when
the queue or the conversation the agent has open changes, so the page refreshes at once
instead of on its 3 s poll (which stays as the fallback when the socket cannot open).

Why a signal and not the data: the page then reads the queue and the ticket through the same
`/v1/agent/...` routes as before, so ABAC, masking at the viewer's clearance and audit stay in
one place; the socket carries no personal data. The server compares a fingerprint (ticket ids,
states, assignee, transcript lengths) every half second, in process: cheap, and correct for
the local and the remote (Conversation deployment) desk alike.

The socket is authenticated by the console's session cookie (the HTTP middleware does not see
WebSockets, so the dependency below does it), opened only from the console's own origin
(a cross-site page cannot ride the cookie: SameSite=Strict plus this check), allowed only to
roles the policies give `desk.work`, and closed as soon as the session ends or the key is
revoked.
"""

# No `from __future__ import annotations`: FastAPI must see the real types of the routes.
import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, WebSocket, WebSocketDisconnect

from crm.console.sessions import SessionStore, cookie_of, header
from privacy.auth import Subject

TICKET_ID = re.compile(r"^[\w.:-]{1,64}$")
POLICY_CLOSE = 4403  # refused: no session, another origin, or no desk.work


def same_origin(scope: dict[str, Any]) -> bool:
    """The Origin header names the host the socket was opened on (browsers always send it)."""
    origin, host = header(scope, b"origin"), header(scope, b"host")
    return bool(origin and host) and origin.split("://", 1)[-1] == host


def fingerprint(queue: list[dict[str, Any]], watched: dict[str, Any] | None) -> str:
    """What the desk page shows, reduced to what changes it (no personal data)."""
    shown = [(t.get("id"), t.get("state"), t.get("agent_id"), t.get("position"),
              len(t.get("transcript") or [])) for t in queue]  # fmt: skip
    if watched is not None:
        shown.append((watched.get("id"), watched.get("state"), watched.get("agent_id"), -1,
                      len(watched.get("transcript") or [])))  # fmt: skip
    return hashlib.sha256(json.dumps(shown, default=str).encode()).hexdigest()


def live_router(
    console: Any,
    desk: Any,
    sessions: SessionStore,
    still_valid: Callable[[Subject], bool],
    period_s: float = 0.5,
) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def current(socket: WebSocket) -> Subject | None:
        value = cookie_of(socket.scope)
        session = sessions.find(value) if value else None
        if session is None or not still_valid(session.subject):
            return None
        return session.subject

    async def desk_socket_caller(websocket: WebSocket) -> Subject | None:
        """The session's subject when the socket may open, else None (the handler refuses)."""
        if not same_origin(websocket.scope):
            return None
        subject = current(websocket)
        if subject is None or not console.allowed(websocket, "desk.work", subject):
            return None
        return subject

    desk_socket_caller.scrm_guard = True  # type: ignore[attr-defined]

    async def state(subject: Subject, watched_id: str | None) -> str:
        queue = await desk.call("queue", skill=None)
        watched = None
        if watched_id:
            with contextlib.suppress(Exception):  # closed or unknown: no longer watched
                found = await desk.call("ticket", ticket_id=watched_id)
                # an agent follows only their own conversation, as the ticket route allows
                if subject.role != "agent" or found.get("agent_id") == subject.id:
                    watched = found
        return fingerprint(queue, watched)

    @router.websocket("/console/ws/desk")
    async def desk_socket(
        websocket: WebSocket, subject: Annotated[Subject | None, Depends(desk_socket_caller)]
    ) -> None:
        if subject is None:
            await websocket.close(code=POLICY_CLOSE)
            return
        await websocket.accept()
        watching: dict[str, str | None] = {"id": None}

        async def listen() -> None:
            """The page says which ticket it has open: {"watch": "<ticket id>" | null}."""
            while True:
                message = await websocket.receive_text()
                with contextlib.suppress(ValueError, AttributeError):
                    wanted = json.loads(message).get("watch")
                    ok = isinstance(wanted, str) and TICKET_ID.match(wanted)
                    watching["id"] = wanted if ok else None

        listener = asyncio.create_task(listen())
        last = None
        try:
            while not listener.done():
                if current(websocket) is None:  # signed out, expired or revoked
                    await websocket.close(code=POLICY_CLOSE)
                    break
                now = await state(subject, watching["id"])
                if now != last:
                    await websocket.send_json({"type": "desk.changed"})
                    last = now
                await asyncio.wait({listener}, timeout=period_s)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            listener.cancel()
            with contextlib.suppress(BaseException):  # its disconnect, or the cancel
                await listener

    return router
