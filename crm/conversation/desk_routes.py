"""The agent desk over HTTP: register, queue, accept, reply, close, transfer back to the bot.

Mounted by the gateway (`app.include_router(agent_router(manager, GUARD, default_tenant))`);
agent replies reach the customer through the manager's `deliver` callback on the channel they
last wrote from. With a guard every route needs `desk.work` (agents and supervisors of the
desk's tenant; a caller of another tenant gets 404, as for an unknown desk), an agent
acts only as themselves, and ticket transcripts are masked at the caller's level
(`?unmask=true`: raw, for `pii.unmask` only, audited).
"""

# No `from __future__ import annotations`: FastAPI must see real types (a Serve ingress runs
# a pickled copy of the routes, where string annotations no longer resolve).

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from crm.conversation.handoff import DeskError, Ticket, owner_of
from crm.conversation.manager import DialogueManager
from privacy.abac import Resource


class AgentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    skills: list[str] = Field(min_length=1, description="e.g. cards, accounts, general")
    capacity: int = Field(3, ge=1, le=50, description="Conversations at once.")


class AgentAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_id: str = Field(min_length=1, max_length=64)


class AgentMessage(AgentAction):
    text: str = Field(max_length=2000)

    @field_validator("text")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is empty; write the reply for the customer")
        return value.strip()


class TicketOut(BaseModel):
    id: str
    session_key: str
    skill: str
    reason: str
    state: str
    agent_id: str | None
    priority: int
    position: int = Field(description="1-based place in the queue; 0 once accepted.")
    transcript: list[dict]


def ticket_out(manager: DialogueManager, ticket: Ticket) -> TicketOut:
    return TicketOut(
        id=ticket.id,
        session_key=ticket.session_key,
        skill=ticket.skill,
        reason=ticket.reason,
        state=ticket.state,
        agent_id=ticket.agent_id,
        priority=ticket.priority,
        position=manager.desk.position(ticket.id),
        transcript=ticket.transcript,
    )


ERRORS = {404: {"description": "Unknown ticket or agent"}, 409: {"description": "Wrong state"}}


def agent_router(
    manager: DialogueManager | Callable[[], DialogueManager],
    guard: Any = None,
    desk_tenant: Callable[[], str] | None = None,
) -> APIRouter:
    """The desk's routes for `manager`, or for whatever manager a getter returns per request
    (a Serve gateway builds its manager in the replica, after the routes exist).

    `guard` (a `Guard` or the gateway's `CurrentGuard`) protects every route with `desk.work`
    on the desk of `desk_tenant()`; None leaves the desk open (unit tests of the desk alone).
    """
    current = manager if not isinstance(manager, DialogueManager) else (lambda: manager)
    router = APIRouter(prefix="/v1/agent", tags=["agent desk"], responses=ERRORS)
    tenant = desk_tenant or (lambda: "default")

    def desk(request: Request) -> Resource:
        return Resource("desk", "desk", tenant())

    def ticket_of(request: Request) -> Resource | None:
        try:
            found = current().desk.get(request.path_params["ticket_id"])
        except DeskError:
            return None
        # The ticket's owner is its customer (None for an anonymous visitor), not the agent
        # on it: a customer asking for someone else's ticket must not learn it exists (404).
        customer = owner_of(found.session_key) or None
        return Resource("ticket", found.id, tenant(), owner=customer, sensitivity=2)

    def no_guard(request: Request) -> None:
        return None

    on_desk = guard.require("desk.work", desk, audit=False) if guard else no_guard

    def unknown(request: Request) -> str:
        return f"Unknown ticket: {request.path_params.get('ticket_id')}"

    on_ticket = guard.require("desk.work", ticket_of, not_found=unknown) if guard else no_guard

    def as_agent(request: Request, agent_id: str) -> None:
        """An agent acts as themselves; a supervisor may act for any agent of the desk."""
        access = getattr(request.state, "access", None)
        if access is not None and access.subject.role == "agent" and access.subject.id != agent_id:
            raise HTTPException(403, f"agents act as themselves: you are {access.subject.id}")

    def call(action, *args) -> TicketOut:
        try:
            return ticket_out(current(), action(*args))
        except DeskError as error:
            raise HTTPException(status_code=error.status, detail=str(error)) from error

    @router.put("/agents/{agent_id}", dependencies=[Depends(on_desk)])
    def register(agent_id: str, body: AgentIn, request: Request) -> dict:
        as_agent(request, agent_id)
        agent = current().desk.register(agent_id, set(body.skills), body.capacity)
        return {"id": agent.id, "skills": sorted(agent.skills), "capacity": agent.capacity}

    @router.get("/queue", dependencies=[Depends(on_desk)])
    def queue(skill: str | None = None) -> list[TicketOut]:
        return [ticket_out(current(), t) for t in current().desk.queue(skill)]

    @router.get("/tickets/{ticket_id}", dependencies=[Depends(on_ticket)])
    def ticket(ticket_id: str, request: Request, unmask: bool = False) -> Any:
        """The ticket with its transcript, masked at your level; `unmask=true` shows it raw
        (needs `pii.unmask`: a supervisor with purpose fraud_review; audited)."""
        found = call(current().desk.get, ticket_id)
        access = getattr(request.state, "access", None)
        if not unmask or guard is None or access is None:
            return found
        return guard.reveal(access, found.model_dump(), ["transcript"])

    @router.post("/tickets/{ticket_id}/accept", dependencies=[Depends(on_ticket)])
    def accept(ticket_id: str, body: AgentAction, request: Request) -> TicketOut:
        as_agent(request, body.agent_id)
        return call(current().accept, ticket_id, body.agent_id)

    @router.post("/tickets/{ticket_id}/reply", dependencies=[Depends(on_ticket)])
    def agent_reply(ticket_id: str, body: AgentMessage, request: Request) -> TicketOut:
        as_agent(request, body.agent_id)
        return call(current().agent_reply, ticket_id, body.agent_id, body.text)

    @router.post("/tickets/{ticket_id}/close", dependencies=[Depends(on_ticket)])
    def close(ticket_id: str, body: AgentAction, request: Request) -> TicketOut:
        as_agent(request, body.agent_id)
        return call(current().close, ticket_id, body.agent_id)

    @router.post("/tickets/{ticket_id}/transfer-to-bot", dependencies=[Depends(on_ticket)])
    def transfer(ticket_id: str, body: AgentAction, request: Request) -> TicketOut:
        as_agent(request, body.agent_id)
        return call(current().transfer_to_bot, ticket_id, body.agent_id)

    return router
