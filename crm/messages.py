"""The channel-neutral message types every adapter converts to and from.

Vendors differ in envelope (encrypted XML, signed JSON, WebSocket frames, MQTT topics), not in
meaning: a customer said something, and the bot (or a human agent) answers. Keeping one type on
each side lets the dialogue stay channel-blind and lets the intake log store any channel.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field


class InboundMessage(BaseModel):
    """A customer message, whatever channel it came from."""

    tenant: str = Field("default", description="Whose customers: corp id, DingTalk corp, site.")
    channel: str
    sender_id: str = Field(description="The vendor's id of the sender (userid, session id...).")
    customer_id: str | None = Field(None, description="CRM id, filled in by the identity map.")
    text: str
    message_id: str = Field(description="The vendor's message id: retries carry the same one.")
    received_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    # Vendor fields a reply needs (WeCom AgentID, DingTalk conversation id, MQTT client...).
    context: dict[str, str] = Field(default_factory=dict)


class Reply(BaseModel):
    """What goes back to the customer. Empty `text` means: say nothing (an agent owns it)."""

    text: str = ""
    intent: str | None = None
    handoff: bool = Field(False, description="A human agent owns (or will own) the conversation.")
    data: dict[str, Any] = Field(default_factory=dict)


MessageHandler = Callable[[InboundMessage], Awaitable[Reply]]
"""The dialogue as the channels see it: one customer message in, one reply out."""
Deliver = Callable[[InboundMessage, Reply], Awaitable[None]]
"""The way back to a customer for a reply produced after the route answered (the worker's)."""


class ChannelAuthError(Exception):
    """Signature, timestamp or decryption check failed: answer 401, store nothing."""


class TooLarge(ValueError):
    """A message longer than the gateway accepts (413), refused before anything is stored."""


class IntakeUnavailable(Exception):
    """The intake log could not store a message (Redis away, disk full): it is not accepted,
    and the caller hears so at once (503 + Retry-After) and retries with the same id."""


class ChannelNotConfigured(Exception):
    """The channel is known but its secrets are missing from the environment (503)."""


@dataclass(frozen=True)
class RawRequest:
    """An HTTP request reduced to what adapters need, so they never import a web framework."""

    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class ChannelResponse:
    """A vendor-format answer: the HTTP layer copies it out as is."""

    body: str | bytes
    media_type: str = "application/json"
    status_code: int = 200
