"""The dialogue as the channel adapters see it: `crm.channels.messages.MessageHandler`.

Converts an `InboundMessage` into a `Turn`, runs the (blocking) manager in a worker thread so
the adapters' event loop keeps serving, and maps the answer back to the adapters' `Reply`
(empty text: an agent owns the conversation, say nothing).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from crm.conversation.manager import DialogueManager, Turn


def message_handler(manager: DialogueManager):
    from crm.channels.messages import InboundMessage, Reply

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
