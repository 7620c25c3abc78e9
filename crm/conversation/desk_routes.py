"""The agent desk over HTTP: register, queue, accept, reply, close, transfer back to the bot.

Mounted by the gateway (`app.include_router(agent_router(desk, access, default_tenant))`);
agent replies reach the customer on the channel they last wrote from (crm/conversation/desk.py).
With a guard every route needs `desk.work` (agents and supervisors of the desk's tenant; a
caller of another tenant gets 404, as for an unknown desk), an agent acts only as themselves,
and ticket transcripts are masked at the caller's level (`?unmask=true`: raw, for `pii.unmask`
only, audited).
"""

# No `from __future__ import annotations`: FastAPI must see real types on the routes.

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from crm.conversation.desk import Desk
from crm.conversation.handoff import DeskError
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
        guard.require("desk.work", on_desk_resource, audit=False),
        guard.require("desk.work", ticket_of, not_found=unknown),
    )


def agent_router(
    desk: Desk, guard: Any = None, desk_tenant: Callable[[], str] | None = None
) -> APIRouter:
    """The desk's routes over `desk` (in process, or the Conversation deployment's).

    `guard` (the gateway's `AccessControl`, or a privacy `Guard`) protects every route with
    `desk.work` on the desk of `desk_tenant()`; None leaves the desk open (unit tests of the
    desk alone).
    """
    router = APIRouter(prefix="/v1/agent", tags=["agent desk"], responses=ERRORS)
    on_desk, on_ticket = desk_checks(desk, guard, desk_tenant or (lambda: "default"))

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
    async def register(agent_id: str, body: AgentIn, request: Request) -> dict:
        as_agent(request, agent_id)
        return await call("register", agent_id=agent_id, skills=sorted(body.skills),
                          capacity=body.capacity)  # fmt: skip

    @router.get("/queue", dependencies=[Depends(on_desk)])
    async def queue(skill: str | None = None) -> list[TicketOut]:
        return [TicketOut(**t) for t in await call("queue", skill=skill)]

    @router.get("/tickets/{ticket_id}", dependencies=[Depends(on_ticket)])
    async def ticket(ticket_id: str, request: Request, unmask: bool = False) -> Any:
        """The ticket with its transcript, masked at your level; `unmask=true` shows it raw
        (needs `pii.unmask`: a supervisor with purpose fraud_review; audited)."""
        found = TicketOut(**await call("ticket", ticket_id=ticket_id))
        access = getattr(request.state, "access", None)
        if not unmask or guard is None or access is None:
            return found
        return guard.reveal(access, found.model_dump(), ["transcript"])

    def action_route(op: str, path: str, body_type: type[AgentAction]) -> None:
        async def act(ticket_id: str, body: body_type, request: Request) -> TicketOut:  # type: ignore[valid-type]  # noqa: E501
            as_agent(request, body.agent_id)
            return TicketOut(**await call(op, ticket_id=ticket_id, **body.model_dump()))

        act.__name__ = op
        router.add_api_route(
            f"/tickets/{{ticket_id}}/{path}", act, methods=["POST"], response_model=TicketOut,
            dependencies=[Depends(on_ticket)],
        )

    action_route("accept", "accept", AgentAction)
    action_route("reply", "reply", AgentMessage)
    action_route("close", "close", AgentAction)
    action_route("transfer", "transfer-to-bot", AgentAction)
    return router
