"""The dialogue as the channel adapters see it: `crm.messages.MessageHandler`.

`message_handler(manager)` runs a dialogue in this process; `remote_handler(conversation)`
asks the Conversation deployment through its handle (the gateway's way).

Converts an `InboundMessage` into a `Turn`, runs the (blocking) manager in a worker thread so
the adapters' event loop keeps serving, and maps the answer back to the adapters' `Reply`
(empty text: an agent owns the conversation, say nothing).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from crm.conversation.manager import DialogueManager, Turn


def message_handler(manager: DialogueManager):
    from crm.messages import InboundMessage, Reply

    async def handle(message: InboundMessage) -> Reply:
        turn = Turn(
            channel=message.channel,
            sender_id=message.sender_id,
            text=message.text,
            customer_id=message.customer_id,
            tenant=message.tenant,
            message_id=message.message_id,
        )
        answer = await asyncio.to_thread(manager.handle, turn)
        return Reply(
            text=answer.text or "",
            intent=answer.intent,
            handoff=answer.state in ("pending", "open"),
            data={k: v for k, v in asdict(answer).items() if v is not None and k != "text"},
        )

    return handle


def remote_handler(conversation, timeout_s: float = 10.0):
    """A `MessageHandler` over the Conversation deployment's handle; raises when it fails or
    does not answer in time (the intake log keeps the message for the worker)."""
    from crm.messages import InboundMessage, Reply

    async def handle(message: InboundMessage) -> Reply:
        return await asyncio.wait_for(conversation.turn.remote(message), timeout_s)

    return handle
