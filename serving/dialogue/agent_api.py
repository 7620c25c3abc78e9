"""The agent desk over HTTP: register, queue, accept, reply, close, transfer back to the bot.

Mounted by the gateway (`app.include_router(agent_router(manager))`); agent replies reach the
customer through the manager's `deliver` callback on the channel they last wrote from.
"""

# No `from __future__ import annotations`: FastAPI must see real types (a Serve ingress runs
# a pickled copy of the routes, where string annotations no longer resolve).

from collections.abc import Callable

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator

from serving.dialogue.handoff import DeskError, Ticket
from serving.dialogue.manager import DialogueManager


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


def agent_router(manager: DialogueManager | Callable[[], DialogueManager]) -> APIRouter:
    """The desk's routes for `manager`, or for whatever manager a getter returns per request
    (a Serve gateway builds its manager in the replica, after the routes exist)."""
    current = manager if not isinstance(manager, DialogueManager) else (lambda: manager)
    router = APIRouter(prefix="/v1/agent", tags=["agent desk"], responses=ERRORS)

    def call(action, *args) -> TicketOut:
        try:
            return ticket_out(current(), action(*args))
        except DeskError as error:
            raise HTTPException(status_code=error.status, detail=str(error)) from error

    @router.put("/agents/{agent_id}")
    def register(agent_id: str, body: AgentIn) -> dict:
        agent = current().desk.register(agent_id, set(body.skills), body.capacity)
        return {"id": agent.id, "skills": sorted(agent.skills), "capacity": agent.capacity}

    @router.get("/queue")
    def queue(skill: str | None = None) -> list[TicketOut]:
        return [ticket_out(current(), t) for t in current().desk.queue(skill)]

    @router.get("/tickets/{ticket_id}")
    def ticket(ticket_id: str) -> TicketOut:
        return call(current().desk.get, ticket_id)

    @router.post("/tickets/{ticket_id}/accept")
    def accept(ticket_id: str, body: AgentAction) -> TicketOut:
        return call(current().accept, ticket_id, body.agent_id)

    @router.post("/tickets/{ticket_id}/reply")
    def agent_reply(ticket_id: str, body: AgentMessage) -> TicketOut:
        return call(current().agent_reply, ticket_id, body.agent_id, body.text)

    @router.post("/tickets/{ticket_id}/close")
    def close(ticket_id: str, body: AgentAction) -> TicketOut:
        return call(current().close, ticket_id, body.agent_id)

    @router.post("/tickets/{ticket_id}/transfer-to-bot")
    def transfer(ticket_id: str, body: AgentAction) -> TicketOut:
        return call(current().transfer_to_bot, ticket_id, body.agent_id)

    return router
