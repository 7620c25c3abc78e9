"""What happens, as versioned events: the contract every producer and consumer shares.

Every event carries an id (the de-duplication key on every engine), its tenant, customer,
event time, source and schema version; `type` selects the payload. A consumer that meets a
`schema_version` newer than it knows rejects the event (counted, never dropped silently);
adding an optional field is a compatible change that keeps the version.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

SCHEMA_VERSION = 1
CHANNELS = ("wecom", "dingtalk", "web_chat", "mqtt", "simulator")
Ident = Annotated[str, Field(min_length=1, max_length=128)]
# Tenants name NATS subjects: letters, digits, "_" and "-" only.
Tenant = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


def new_id() -> str:
    return uuid.uuid4().hex


class EventBase(BaseModel):
    """Fields every event has. Frozen and strict: an unknown field is a malformed event."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    event_id: Ident = Field(default_factory=new_id)
    tenant: Tenant = "default"
    customer_id: Ident
    at: datetime = Field(default_factory=lambda: datetime.now(UTC), description="event time")
    source: Ident = "gateway"
    schema_version: Literal[1] = SCHEMA_VERSION

    @field_validator("at")
    @classmethod
    def aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("event time needs a timezone")
        return value.astimezone(UTC)


class MessageReceived(EventBase):
    type: Literal["message.received"] = "message.received"
    channel: str = Field(max_length=32)
    session: str = Field("", max_length=128)
    text: str = Field("", max_length=4000, description="masked or sealed per privacy settings")


class ReplySent(EventBase):
    type: Literal["reply.sent"] = "reply.sent"
    channel: str = Field(max_length=32)
    kind: str = Field("answer", max_length=32)


class PredictionMade(EventBase):
    type: Literal["prediction.made"] = "prediction.made"
    model: str = Field(max_length=64)
    version: str = Field("", max_length=32)
    label: str | None = Field(None, max_length=64)
    confidence: float | None = Field(None, ge=0, le=1)
    latency_ms: float | None = Field(None, ge=0)


class TurnRecorded(EventBase):
    """One customer turn as the dialogue understood it: what the conversation aggregates and
    the offline history are made of."""

    type: Literal["turn.recorded"] = "turn.recorded"
    channel: str = Field(max_length=32)
    intent: str | None = Field(None, max_length=64)
    sentiment: Literal["negative", "neutral", "positive"] | None = None
    handoff: bool = False
    # What judged the turn (optional, so older events stay valid): the prediction-log row of
    # the intent model's answer, and how the dialogue answered (answer, clarify, handoff, ...).
    prediction_id: str | None = Field(None, max_length=128)
    model: str | None = Field(None, max_length=64)
    model_version: str | None = Field(None, max_length=32)
    variant: Literal["champion", "challenger"] | None = None
    confidence: float | None = Field(None, ge=0, le=1)
    reply_kind: str | None = Field(None, max_length=32)
    session: str | None = Field(None, max_length=128)


class Handoff(EventBase):
    type: Literal["handoff.requested", "handoff.assigned", "handoff.resolved"]
    ticket_id: str = Field("", max_length=64)
    agent: str | None = Field(None, max_length=64)
    reason: str | None = Field(None, max_length=128)


class AgentReplied(EventBase):
    type: Literal["agent.replied"] = "agent.replied"
    ticket_id: str = Field("", max_length=64)
    agent: str = Field(max_length=64)


FEEDBACK_KINDS = (
    "intent_confirmed", "intent_corrected", "answer_right", "answer_wrong", "resolved",
    "thumbs", "csat", "rephrase", "handoff_after_answer", "reopen",
)  # fmt: skip


class FeedbackGiven(EventBase):
    """A judgement of a served prediction: by an agent (confirm/correct the intent, answer
    right/wrong, resolve with an outcome), the customer (thumbs, CSAT) or implicit (rephrase,
    handoff right after an answer, reopen). `prediction_id` + `model_version` trace it to the
    prediction-log row it judges; `kind` is optional so events written before it stay valid."""

    type: Literal["feedback.given"] = "feedback.given"
    label: str | None = Field(None, max_length=64)
    thumbs: Literal["up", "down"] | None = None
    csat: int | None = Field(None, ge=1, le=5)
    prediction_event: str | None = Field(None, max_length=128)
    kind: Literal[FEEDBACK_KINDS] | None = None  # type: ignore[valid-type]
    prediction_id: str | None = Field(None, max_length=128)
    model: str | None = Field(None, max_length=64)
    model_version: str | None = Field(None, max_length=32)
    variant: Literal["champion", "challenger"] | None = None
    predicted: str | None = Field(None, max_length=64, description="the label that was served")
    correct: bool | None = None
    outcome: str | None = Field(None, max_length=64)
    agent: str | None = Field(None, max_length=64)
    ticket_id: str | None = Field(None, max_length=64)


class CustomerUpdated(EventBase):
    type: Literal["customer.updated"] = "customer.updated"
    fields: list[str] = Field(default_factory=list, max_length=64)


class TagChanged(EventBase):
    type: Literal["tag.changed"] = "tag.changed"
    tag: str = Field(max_length=64)
    added: bool = True


class ConsentChanged(EventBase):
    type: Literal["consent.changed"] = "consent.changed"
    purpose: str = Field(max_length=64)
    granted: bool


class AnswerRecorded(EventBase):
    """A student's answer (education scenario, issue 27); `customer_id` is the student."""

    type: Literal["answer.recorded"] = "answer.recorded"
    skill_id: str = Field(min_length=1, max_length=64)
    correct: bool


class ErasureRequested(EventBase):
    type: Literal["erasure.requested"] = "erasure.requested"
    requested_by: str = Field("", max_length=64)


class CampaignEvent(EventBase):
    type: Literal[
        "campaign.sent", "campaign.delivered", "campaign.opened", "campaign.replied",
        "campaign.converted",
    ]  # fmt: skip
    campaign_id: str = Field(max_length=64)
    channel: str = Field("wecom", max_length=32)
    value: float | None = None
    arm: str | None = Field(None, max_length=64)  # the experiment arm (issue 22)
    step: str | None = Field(None, max_length=64)  # the journey step


Event = Annotated[
    MessageReceived | ReplySent | PredictionMade | TurnRecorded | Handoff | AgentReplied
    | FeedbackGiven | CustomerUpdated | TagChanged | ConsentChanged | ErasureRequested
    | CampaignEvent | AnswerRecorded,
    Field(discriminator="type"),
]  # fmt: skip
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_TYPES: tuple[str, ...] = tuple(
    t
    for model in (
        MessageReceived,
        ReplySent,
        PredictionMade,
        TurnRecorded,
        Handoff,
        AgentReplied,
        FeedbackGiven,
        CustomerUpdated,
        TagChanged,
        ConsentChanged,
        ErasureRequested,
        CampaignEvent,
        AnswerRecorded,
    )  # fmt: skip
    for t in model.model_fields["type"].annotation.__args__  # type: ignore[union-attr]
)
