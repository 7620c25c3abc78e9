"""MessageRouter: one route per channel, turning vendor payloads into one `InboundMessage`.

Adapters only translate formats; understanding the message is the models' job, reached through
the deployment handles the gateway passes in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field

from serving.schemas import IntentResponse, TextRequest


class UnsupportedChannel(ValueError):
    def __init__(self, channel: str, supported: list[str]):
        super().__init__(f"Unsupported channel: {channel}; supported: {', '.join(supported)}")


class InboundMessage(BaseModel):
    """A customer message, whatever channel it came from."""

    channel: str
    sender_id: str
    customer_id: str | None = None
    text: str
    message_id: str
    received_at: datetime


class ChannelAdapter(Protocol):
    name: str

    def parse(self, payload: dict[str, Any]) -> InboundMessage: ...

    def render(self, message: InboundMessage, intent: IntentResponse) -> dict[str, Any]: ...


class WebChatPayload(TextRequest):
    model_config = ConfigDict(extra="forbid")
    session_id: str = Field(min_length=1, max_length=128, description="Browser chat session.")
    message_id: str | None = Field(None, max_length=128)
    customer_id: str | None = Field(
        None, min_length=1, max_length=64, pattern=r"^[\w-]+$", description="CRM id if known."
    )


class WebChatAdapter:
    name = "web_chat"

    def parse(self, payload: dict[str, Any]) -> InboundMessage:
        body = WebChatPayload.model_validate(payload)
        return InboundMessage(
            channel=self.name,
            sender_id=body.session_id,
            customer_id=body.customer_id,
            text=body.text,
            message_id=body.message_id or uuid4().hex,
            received_at=datetime.now(UTC),
        )

    def render(self, message: InboundMessage, intent: IntentResponse) -> dict[str, Any]:
        return {
            "session_id": message.sender_id,
            "message_id": message.message_id,
            "reply": f"已识别您的需求：{intent.label}",
            "intent": intent.model_dump(),
        }


class MessageRouter:
    def __init__(self, adapters: list[ChannelAdapter]):
        self.routes = {adapter.name: adapter for adapter in adapters}

    @property
    def supported(self) -> list[str]:
        return sorted(self.routes)

    def adapter(self, channel: str) -> ChannelAdapter:
        if channel not in self.routes:
            raise UnsupportedChannel(channel, self.supported)
        return self.routes[channel]
