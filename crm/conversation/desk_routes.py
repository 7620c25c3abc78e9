"""The agent desk over HTTP: register, queue, accept, reply, close, transfer back to the bot.

Mounted by the gateway (`app.include_router(agent_router(desk, access, default_tenant))`);
agent replies reach the customer on the channel they last wrote from (crm/conversation/desk.py).
With a guard every route needs `desk.work` (agents and supervisors of the desk's tenant; a
caller of another tenant gets 404, as for an unknown desk), an agent acts only as themselves,
and ticket transcripts are masked at the caller's level (`?unmask=true`: raw, for `pii.unmask`
only, audited).
"""

# No `from __future__ import annotations`: FastAPI must see real types on the routes.

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from crm.conversation.desk import Desk
from crm.conversation.handoff import DeskError
from privacy.abac import Resource

# An agent id from the path is stored by the desk: letters, digits, `_.@-` only (a NUL, a lone
# surrogate or an 8 KB id from a fuzzed URL was registered as an agent; issue 26).
AgentId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[\w.@-]+$")]
Skill = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\w.-]+$")]


class AgentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    skills: list[Skill] = Field(
        min_length=1, max_length=32, description="e.g. cards, accounts, general"
    )
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


class FeedbackIn(AgentAction):
    """An agent's judgement of the bot on this ticket (published on the bus as feedback)."""

    kind: Literal[
        "intent_confirmed", "intent_corrected", "answer_right", "answer_wrong", "resolved"
    ]
    label: str | None = Field(None, min_length=1, max_length=64, description="right intent")
    outcome: str | None = Field(None, min_length=1, max_length=64, description="on resolved")
    prediction_id: str | None = Field(
        None, min_length=1, max_length=128, description="default: the ticket's last scored turn"
    )


class TicketOut(BaseModel):
    id: str
    session_key: str
    customer_id: str | None = None
    skill: str
    reason: str
    state: str
    agent_id: str | None
    priority: int
    position: int = Field(description="1-based place in the queue; 0 once accepted.")
    transcript: list[dict]


ERRORS = {404: {"description": "Unknown ticket or agent"}, 409: {"description": "Wrong state"}}


def desk_checks(desk: Desk, guard: Any, tenant: Callable[[], str]) -> tuple[Any, Any]:
    """The access checks of desk-wide routes and of routes on one ticket (none: no guard)."""

    def on_desk_resource(request: Request) -> Resource:
        return Resource("desk", "desk", tenant())

    async def ticket_of(request: Request) -> Resource | None:
        try:
            found = await desk.call("ticket", ticket_id=request.path_params["ticket_id"])
        except DeskError:
            return None
        # The ticket's owner is its customer (None for an anonymous visitor), not the agent
        # on it: a customer asking for someone else's ticket must not learn it exists (404).
        return Resource("ticket", found["id"], tenant(), owner=found["customer_id"],
                        sensitivity=2)  # fmt: skip

    def unknown(request: Request) -> str:
        return f"Unknown ticket: {request.path_params.get('ticket_id')}"

    def no_guard(request: Request) -> None:
        return None

    if guard is None:
        return no_guard, no_guard
    return (
        guard.require("desk.work", on_desk_resource),  # queue reads show transcripts: audited
        guard.require("desk.work", ticket_of, not_found=unknown),
    )


def may_read_transcripts(guard: Any, request: Request, tenant: str) -> bool:
    """Whether the caller may see conversation text (`conversation.read` at personal
    sensitivity, so an agent under clearance 2 sees the queue without transcripts); the
    decision is audited like any read of personal data."""
    access = getattr(request.state, "access", None)
    if guard is None or access is None:
        return True
    decide = getattr(guard, "guard", guard)  # the gateway's AccessControl wraps a Guard
    target = Resource("conversation", "desk", tenant, sensitivity=2)
    try:
        decide.authorize(access, "conversation.read", target)
    except HTTPException:
        return False
    return True


def agent_router(
    desk: Desk,
    guard: Any = None,
    desk_tenant: Callable[[], str] | None = None,
    publish: Callable[[list], Any] | None = None,
) -> APIRouter:
    """The desk's routes over `desk` (in process, or the Conversation deployment's).

    `guard` (the gateway's `AccessControl`, or a privacy `Guard`) protects every route with
    `desk.work` on the desk of `desk_tenant()`; None leaves the desk open (unit tests of the
    desk alone).
    """
    router = APIRouter(prefix="/v1/agent", tags=["agent desk"], responses=ERRORS)
    tenant = desk_tenant or (lambda: "default")
    on_desk, on_ticket = desk_checks(desk, guard, tenant)

    def visible(request: Request, ticket: dict) -> dict:
        """A ticket as this caller may see it: an agent sees the queue and their own tickets,
        not a colleague's; transcripts only at sufficient clearance."""
        access = getattr(request.state, "access", None)
        agent = access.subject.id if access is not None and access.subject.role == "agent" else None
        if agent is not None and ticket.get("agent_id") not in (None, agent):
            raise HTTPException(404, f"Unknown ticket: {ticket.get('id')}")
        if not may_read_transcripts(guard, request, tenant()):
            return {**ticket, "transcript": []}
        return ticket

    def as_agent(request: Request, agent_id: str) -> None:
        """An agent acts as themselves; a supervisor may act for any agent of the desk."""
        access = getattr(request.state, "access", None)
        if access is not None and access.subject.role == "agent" and access.subject.id != agent_id:
            raise HTTPException(403, f"agents act as themselves: you are {access.subject.id}")

    async def call(op: str, **args: Any) -> Any:
        try:
            return await desk.call(op, **args)
        except DeskError as error:
            raise HTTPException(status_code=error.status, detail=str(error)) from error

    @router.put("/agents/{agent_id}", dependencies=[Depends(on_desk)])
    async def register(agent_id: AgentId, body: AgentIn, request: Request) -> dict:
        as_agent(request, agent_id)
        return await call("register", agent_id=agent_id, skills=sorted(body.skills),
                          capacity=body.capacity)  # fmt: skip

    @router.get("/queue", dependencies=[Depends(on_desk)])
    async def queue(request: Request, skill: str | None = None) -> list[TicketOut]:
        tickets = await call("queue", skill=skill)
        transcripts = may_read_transcripts(guard, request, tenant())
        access = getattr(request.state, "access", None)
        mine = access.subject.id if access is not None and access.subject.role == "agent" else None
        return [
            TicketOut(**(t if transcripts else {**t, "transcript": []}))
            for t in tickets
            if mine is None or t.get("agent_id") in (None, mine)
        ]

    @router.get("/tickets/{ticket_id}", dependencies=[Depends(on_ticket)])
    async def ticket(ticket_id: str, request: Request, unmask: bool = False) -> Any:
        """The ticket with its transcript, masked at your level; `unmask=true` shows it raw
        (needs `pii.unmask`: a supervisor with purpose fraud_review; audited)."""
        found = TicketOut(**visible(request, await call("ticket", ticket_id=ticket_id)))
        access = getattr(request.state, "access", None)
        if not unmask or guard is None or access is None:
            return found
        return guard.reveal(access, found.model_dump(), ["transcript"])

    def action_route(op: str, path: str, body_type: type[AgentAction]) -> None:
        async def act(ticket_id: str, body: body_type, request: Request) -> TicketOut:  # type: ignore[valid-type]  # noqa: E501
            as_agent(request, body.agent_id)
            return TicketOut(**visible(request, await call(op, ticket_id=ticket_id,
                                                           **body.model_dump())))  # fmt: skip

        act.__name__ = op
        router.add_api_route(
            f"/tickets/{{ticket_id}}/{path}",
            act,
            methods=["POST"],
            response_model=TicketOut,
            dependencies=[Depends(on_ticket)],
        )

    @router.post("/tickets/{ticket_id}/feedback", status_code=202,
                 dependencies=[Depends(on_ticket)])  # fmt: skip
    async def feedback(ticket_id: str, body: FeedbackIn, request: Request) -> dict:
        """Confirm or correct the intent of the ticket's scored turn, mark the bot's answer
        right or wrong, or resolve with an outcome: one `feedback.given` event on the bus,
        naming the prediction and model version it judges (202 once stored)."""
        from crm.streams.recorder import desk_feedback

        as_agent(request, body.agent_id)
        found = visible(request, await call("ticket", ticket_id=ticket_id))
        if found.get("agent_id") != body.agent_id:
            raise HTTPException(409, f"ticket {ticket_id} is not {body.agent_id}'s: accept it")
        if publish is None:
            raise HTTPException(503, "feedback needs the event bus, which this desk has not")
        raw = await call("ticket", ticket_id=ticket_id)  # the transcript's prediction ids
        try:
            event = desk_feedback(raw, body.agent_id, body.kind, tenant(), body.label,
                                  body.outcome, body.prediction_id)  # fmt: skip
        except ValueError as error:
            raise HTTPException(422, str(error)) from error
        await asyncio.to_thread(publish, [event])
        return {"event_id": event.event_id, "prediction_id": event.prediction_id,
                "model": event.model, "model_version": event.model_version}  # fmt: skip

    action_route("accept", "accept", AgentAction)
    action_route("reply", "reply", AgentMessage)
    action_route("close", "close", AgentAction)
    action_route("transfer", "transfer-to-bot", AgentAction)
    return router
