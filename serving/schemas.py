"""Request and response bodies of the public API (they are the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TextRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="The customer's message, any language the model knows.")

    @field_validator("text")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is empty; send the customer's message")
        return value.strip()


class IntentResponse(BaseModel):
    label: str = Field(description="The intent, or `unknown` below the model's threshold.")
    confidence: float = Field(ge=0.0, le=1.0, description="Calibrated (temperature-scaled).")
    top_label: str = Field(description="The most likely intent, even when `label` is unknown.")
    in_scope: bool = Field(description="False: not confident enough; hand off or ask again.")
    model_name: str
    model_version: str


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


class ErrorResponse(BaseModel):
    detail: str


class Health(BaseModel):
    status: str
