"""params.yaml `events:`: the durable event bus (engine, partitions, consumers, lateness)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from settings.base import Strict


class EventSettings(Strict):
    # embedded: a sqlite WAL log under the project (no server); jetstream: NATS at nats_url.
    engine: Literal["embedded", "jetstream"] = "embedded"
    log: str = "data/events/bus.db"
    # Consumers' derived stores and checkpoints (aggregates, offline history, counters).
    derived_db: str = "data/events/derived.db"
    nats_url: str = "nats://127.0.0.1:4222"
    stream: str = "SCRM_EVENTS"
    subject_prefix: str = "scrm.ev"
    stream_replicas: int = Field(1, ge=1, le=5)
    duplicate_window_s: float = Field(120.0, gt=0)
    # A customer's events always go to one of `partitions` keyed partitions (crc32 of the id).
    partitions: int = Field(8, ge=1, le=256)
    # Personal data in message text: masked (privacy.masking, strict), dropped, or kept.
    message_text: Literal["mask", "drop", "keep"] = "mask"
    # Conversation aggregates: events older than the watermark (newest event time seen minus
    # this) are late: kept in the history, not in the windows.
    allowed_lateness_s: float = Field(3600.0, ge=0)
    batch: int = Field(500, ge=1, le=10_000)
    # Run the stream processors inside each Conversation replica (off for a separate
    # `scrm events run`).
    run_in_app: bool = True
    # Implicit feedback (crm/streams/feedback.py): a customer writing again this soon after an
    # answer is rephrasing; one writing again this soon after an agent resolved reopens.
    rephrase_window_s: float = Field(120.0, gt=0)
    reopen_window_s: float = Field(86_400.0, gt=0)
