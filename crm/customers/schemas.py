"""Bodies of the customer routes (they are the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from privacy.hostile import iso_time


class CustomerFeatures(BaseModel):
    customer_id: str
    features: dict[str, float | int | str | None]
    feature_service: str


class ConversationEventRequest(BaseModel):
    """One customer message as seen by a channel, for the conversation aggregates."""

    model_config = ConfigDict(extra="forbid")
    channel: Literal["wecom", "dingtalk", "web_chat"]
    intent: str | None = Field(None, max_length=64)
    sentiment: Literal["negative", "neutral", "positive"] | None = None
    handoff: bool = False
    at: datetime | None = Field(None, description="Message time (UTC); default now.")

    @field_validator("at", mode="before")
    @classmethod
    def iso_text(cls, value: object) -> object:
        """An ISO 8601 string, as documented, not Unix seconds (issue 26)."""
        return iso_time(value)

    @field_validator("at")
    @classmethod
    def aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("at needs a timezone, e.g. 2026-11-27T08:00:00Z")
        return value


class ConversationStats(BaseModel):
    customer_id: str
    stats: dict[str, float | int | str | None]
    pushed_to: str = Field(description="The feature view now serving these values online.")


class EventAccepted(BaseModel):
    customer_id: str
    event_id: str = Field(description="The event's id on the bus (its de-duplication key).")
    bus: str = Field(description="The bus engine that stored it: embedded or jetstream.")
