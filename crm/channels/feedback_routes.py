"""Customer feedback on web chat: thumbs up/down and a 1-5 CSAT on the bot's last answer.

`POST /v1/channels/web_chat/sessions/{session_id}/feedback` is guarded like the session's
transcript (the session's customer, or staff of its tenant who may read it): a caller cannot
rate someone else's conversation. The rating is one `feedback.given` event on the bus; the
feedback consumer names the prediction and model version of the customer's last answered
turn (crm/streams/feedback.py). WeCom and DingTalk have no buttons: a reply that is only
满意 / 不满意 / 1-5 is the same feedback (crm/conversation/manager.py).
"""

# No `from __future__ import annotations`: FastAPI must see real types on the routes.
import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, model_validator

from crm.channels.errors import ERRORS
from events.schemas import FeedbackGiven

SESSION_ID = PathParam(min_length=1, max_length=128)


class RatingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    thumbs: Literal["up", "down"] | None = None
    csat: int | None = Field(None, ge=1, le=5, description="1 (bad) .. 5 (very good)")
    prediction_id: str | None = Field(None, min_length=1, max_length=128,
                                      description="default: the last answered turn")  # fmt: skip

    @model_validator(mode="after")
    def something(self) -> "RatingIn":
        if self.thumbs is None and self.csat is None:
            raise ValueError("send thumbs (up/down) or csat (1-5)")
        return self


def add_feedback_route(
    router: APIRouter,
    owner_of: Callable[[str], str | None],
    guard: Callable[..., Any],
    publish: Callable[[list], Any] | None,
    tenant: Callable[[], str],
) -> None:
    """`owner_of(session_id)`: the customer a web chat session is linked to."""

    @router.post(
        "/web_chat/sessions/{session_id}/feedback", status_code=202, responses=ERRORS,
        dependencies=[Depends(guard)],
    )  # fmt: skip
    async def web_chat_feedback(
        session_id: Annotated[str, SESSION_ID], body: RatingIn
    ) -> dict[str, Any]:
        """Rate the bot's last answer (thumbs and/or CSAT): stored on the bus, 202."""
        customer = await asyncio.to_thread(owner_of, session_id)
        if not customer:
            raise HTTPException(404, f"unknown session: {session_id}")
        if publish is None:
            raise HTTPException(503, "feedback needs the event bus, which is not configured")
        event = FeedbackGiven(
            customer_id=customer, tenant=tenant(), source="web_chat",
            kind="csat" if body.csat is not None else "thumbs", thumbs=body.thumbs,
            csat=body.csat, prediction_id=body.prediction_id,
        )  # fmt: skip
        await asyncio.to_thread(publish, [event])
        return {"event_id": event.event_id, "session_id": session_id}
