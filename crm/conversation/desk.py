"""The agent desk as the routes see it: the same operations, in process or across a handle.

`LocalDesk` runs them on a `DialogueManager` (its `deliver` callback says what customers must
hear); `RemoteDesk` runs them in the Conversation deployment and delivers what comes back
through the gateway's channels. Both answer plain dicts (a `TicketOut`'s fields) and raise
`DeskError` with the HTTP status the route answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, Protocol

from crm.conversation.handoff import DeskError, Ticket, owner_of
from crm.conversation.manager import DialogueManager, Outbound

ACTIONS = ("accept", "reply", "close", "transfer")


def ticket_fields(manager: DialogueManager, ticket: Ticket) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "session_key": ticket.session_key,
        "customer_id": owner_of(ticket.session_key) or None,
        "skill": ticket.skill,
        "reason": ticket.reason,
        "state": ticket.state,
        "agent_id": ticket.agent_id,
        "priority": ticket.priority,
        "position": manager.desk.position(ticket.id),
        "transcript": ticket.transcript,
    }


def run_desk_operation(manager: DialogueManager, op: str, **args: Any) -> Any:
    """One desk operation on `manager` (blocking): what both desks execute."""
    if op == "register":
        agent = manager.desk.register(args["agent_id"], set(args["skills"]), args["capacity"])
        return {"id": agent.id, "skills": sorted(agent.skills), "capacity": agent.capacity}
    if op == "queue":
        return [ticket_fields(manager, t) for t in manager.desk.queue(args.get("skill"))]
    if op == "ticket":
        return ticket_fields(manager, manager.desk.get(args["ticket_id"]))
    ticket_id, agent_id = args["ticket_id"], args["agent_id"]
    if op == "accept":
        ticket = manager.accept(ticket_id, agent_id)
    elif op == "reply":
        ticket = manager.agent_reply(ticket_id, agent_id, args["text"])
    elif op == "close":
        ticket = manager.close(ticket_id, agent_id)
    elif op == "transfer":
        ticket = manager.transfer_to_bot(ticket_id, agent_id)
    else:
        raise DeskError(f"unknown desk operation {op!r}", status=400)
    return ticket_fields(manager, ticket)


class Desk(Protocol):
    async def call(self, op: str, **args: Any) -> Any:
        """register | queue | ticket | accept | reply | close | transfer; DeskError on refusal."""
        ...


class LocalDesk:
    """The desk of an in-process dialogue (unit tests, one-process tools)."""

    def __init__(self, manager: DialogueManager):
        self.manager = manager

    async def call(self, op: str, **args: Any) -> Any:
        return await asyncio.to_thread(run_desk_operation, self.manager, op, **args)


Deliver = Callable[[Outbound], Awaitable[None]]


class RemoteDesk:
    """The desk of the Conversation deployment: operations run there; what the customer must
    hear (agent replies, notices) comes back and goes out on the gateway's channels."""

    def __init__(self, conversation: Any, deliver: Deliver, timeout_s: float = 10.0):
        self.conversation = conversation
        self.deliver = deliver
        self.timeout_s = timeout_s

    async def call(self, op: str, **args: Any) -> Any:
        answer = await asyncio.wait_for(
            self.conversation.desk.remote(op, args), timeout=self.timeout_s
        )
        if "error" in answer:
            raise DeskError(answer["error"]["detail"], status=answer["error"]["status"])
        for outbound in answer.get("outbound", []):
            await self.deliver(Outbound(**outbound))
        return answer["result"]


def outbound_dicts(outbound: list[Outbound]) -> list[dict[str, Any]]:
    return [asdict(o) for o in outbound]
