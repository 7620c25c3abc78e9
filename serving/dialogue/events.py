"""Turn events -> the feature store: the `record_event` hook backed by ConversationStream."""

from __future__ import annotations

from datetime import UTC, datetime

from features.conversations import ConversationEvent


def stream_recorder(stream):
    """A `record_event` that pushes each identified customer's turn through
    `features.store.ConversationStream` (anonymous turns have no entity to aggregate on)."""

    def record_event(
        customer_id: str | None,
        channel: str,
        intent: str | None,
        sentiment: str | None,
        handoff: bool,
    ) -> None:
        if customer_id:
            event = ConversationEvent(
                customer_id, datetime.now(UTC), channel, intent, sentiment, handoff
            )
            stream.record(event)

    return record_event
