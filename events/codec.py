"""Events <-> bytes on the wire, and the one place personal text is protected before it is.

`encode` protects a message's text as `settings.events.message_text` says (masked: every
detected personal span replaced, `privacy.masking`; or dropped) and writes compact JSON.
`decode` accepts only events that fit the schema; everything else raises `EventRejected`
with the reason and is counted in `scrm_bus_rejected_events_total{reason}` (never dropped
silently: consumers park rejected payloads in their dead-letter table).
"""

from __future__ import annotations

import json
import zlib
from typing import Literal

from prometheus_client import Counter
from pydantic import ValidationError

from events.schemas import EVENT_ADAPTER, EVENT_TYPES, SCHEMA_VERSION, Event, MessageReceived
from privacy.masking import mask_text

REJECTED = Counter(
    "scrm_bus_rejected_events", "Events refused by the bus codec, by reason", ["reason"]
)
TextPolicy = Literal["mask", "drop", "keep"]


class EventRejected(ValueError):
    """A payload that is not a known, well-formed event; `reason` is a short label."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def protect(event: Event, text_policy: TextPolicy = "mask") -> Event:
    """The event as it may be stored: personal spans of a message's text masked or dropped."""
    if not isinstance(event, MessageReceived) or not event.text or text_policy == "keep":
        return event
    text = mask_text(event.text, "strict") if text_policy == "mask" else ""
    return event.model_copy(update={"text": text})


def encode(event: Event, text_policy: TextPolicy = "mask") -> bytes:
    return protect(event, text_policy).model_dump_json().encode()


def decode(payload: bytes | str) -> Event:
    """The event in `payload`; raises EventRejected (and counts it) when it is not one.

    The common case is one pydantic-core JSON validation; only a payload that fails it is
    parsed again to name the reason."""
    try:
        return EVENT_ADAPTER.validate_json(payload)
    except ValidationError:
        pass
    try:
        raw = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as error:
        raise _reject("malformed", f"not JSON ({error})") from None
    if not isinstance(raw, dict):
        raise _reject("malformed", "an event is a JSON object")
    if raw.get("type") not in EVENT_TYPES:
        raise _reject("unknown_type", f"unknown event type {raw.get('type')!r}")
    if raw.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise _reject("unknown_version", f"schema_version {raw.get('schema_version')!r}")
    try:
        return EVENT_ADAPTER.validate_python(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "event"
        raise _reject("invalid", f"{where}: {first['msg']}") from None


def _reject(reason: str, detail: str) -> EventRejected:
    REJECTED.labels(reason=reason).inc()
    return EventRejected(reason, detail)


def partition_of(customer_id: str, partitions: int) -> int:
    """The customer's partition: stable across processes and runs (crc32, not hash())."""
    return zlib.crc32(customer_id.encode()) % partitions


def subject_of(prefix: str, event: Event, partitions: int) -> str:
    """`prefix.tenant.type.pN`: one subject per tenant, event type and key partition."""
    kind = event.type.replace(".", "_")
    return f"{prefix}.{event.tenant}.{kind}.p{partition_of(event.customer_id, partitions)}"
