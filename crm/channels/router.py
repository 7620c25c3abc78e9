"""MessageRouter: one route per channel, turning vendor payloads into one `InboundMessage`.

Adapters only translate formats; understanding the message is the models' job, reached through
the message handler the gateway passes in. The HTTP routes live in `crm.channels.routes`.
"""

from __future__ import annotations

from typing import Protocol

from crm.channels.webchat import WebChatAdapter, WebChatPayload
from crm.messages import (
    ChannelResponse,
    InboundMessage,
    RawRequest,
    Reply,
)

__all__ = [
    "ChannelAdapter",
    "InboundMessage",
    "MessageRouter",
    "UnsupportedChannel",
    "WebChatAdapter",
    "WebChatPayload",
]


class UnsupportedChannel(ValueError):
    def __init__(self, channel: str, supported: list[str]):
        self.channel = channel
        super().__init__(f"Unsupported channel: {channel}; supported: {', '.join(supported)}")


class ChannelAdapter(Protocol):
    """One vendor: authenticate + parse its request, render a reply in its format."""

    name: str

    def accept(self, request: RawRequest) -> InboundMessage:
        """Verify the request (ChannelAuthError -> 401) and convert it; ValueError -> 422."""
        ...

    def respond(self, message: InboundMessage, reply: Reply | None) -> ChannelResponse:
        """The vendor-format answer; `None`: accepted, the reply comes later (or never)."""
        ...


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
