"""The event contract, the codec and the embedded engine (no server)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from events.codec import REJECTED, EventRejected, decode, encode, partition_of, subject_of
from events.embedded import EmbeddedBus
from events.schemas import EVENT_TYPES, MessageReceived, PredictionMade, TurnRecorded


def turn(customer: str, i: int = 0, **fields) -> TurnRecorded:
    at = fields.pop("at", datetime(2026, 12, 1, 8, 0, i, tzinfo=UTC))
    return TurnRecorded(customer_id=customer, channel="web_chat", at=at, **fields)


def rejected(reason: str) -> float:
    return REJECTED.labels(reason=reason)._value.get()


def test_every_event_round_trips_with_its_type_and_version() -> None:
    event = PredictionMade(customer_id="c1", model="intent", version="3", label="balance",
                           confidence=0.9, latency_ms=4.2)  # fmt: skip
    back = decode(encode(event))
    assert back == event and back.type == "prediction.made" and back.schema_version == 1
    assert {"message.received", "handoff.assigned", "campaign.converted"} <= set(EVENT_TYPES)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed"),
        (b"[1, 2]", "malformed"),
        (json.dumps({"type": "order.shipped", "customer_id": "c"}).encode(), "unknown_type"),
        (
            json.dumps(
                {
                    "type": "turn.recorded",
                    "customer_id": "c",
                    "channel": "wecom",
                    "schema_version": 9,
                }
            ).encode(),
            "unknown_version",
        ),  # fmt: skip
        (json.dumps({"type": "turn.recorded", "customer_id": "c"}).encode(), "invalid"),
        (
            json.dumps({"type": "feedback.given", "customer_id": "c", "csat": 9}).encode(),
            "invalid",
        ),  # fmt: skip
    ],
)
def test_bad_payloads_are_rejected_with_a_reason_and_counted(payload: bytes, reason: str) -> None:
    before = rejected(reason)
    with pytest.raises(EventRejected) as caught:
        decode(payload)
    assert caught.value.reason == reason and caught.value.detail
    assert rejected(reason) == before + 1


def test_naive_times_and_unsafe_tenants_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        TurnRecorded(customer_id="c", channel="wecom", at=datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        TurnRecorded(customer_id="c", channel="wecom", tenant="a.b")


def test_personal_data_in_message_text_is_masked_or_dropped_before_storage() -> None:
    event = MessageReceived(customer_id="c", channel="wecom", text="call me on 13812345678")
    masked = decode(encode(event)).text
    assert "13812345678" not in masked and masked.startswith("call me on")
    assert decode(encode(event, "drop")).text == ""
    assert decode(encode(event, "keep")).text == event.text


def test_partitions_are_stable_and_subjects_name_tenant_type_and_partition() -> None:
    assert partition_of("customer-42", 8) == partition_of("customer-42", 8)
    assert len({partition_of(f"c{i}", 8) for i in range(200)}) == 8
    subject = subject_of("scrm.ev", turn("c1"), 8)
    assert subject == f"scrm.ev.default.turn_recorded.p{partition_of('c1', 8)}"


def test_embedded_publish_is_durable_deduplicated_and_keyed(tmp_path) -> None:
    async def scenario() -> None:
        bus = EmbeddedBus(tmp_path / "bus.db", partitions=4)
        events = [turn(f"c{i % 5}", i) for i in range(40)]
        assert await bus.publish(events) == 40
        assert await bus.publish(events[:10]) == 0  # same ids: nothing new
        await bus.close()
        reopened = EmbeddedBus(tmp_path / "bus.db", partitions=4)  # survives a reopen
        assert (await reopened.stats())["events"] == 40
        consumer = await reopened.consumer("t", range(4), {})
        got = []
        while batch := await consumer.fetch(7):
            got += batch
            await consumer.ack(batch)
        assert sorted(d.event.event_id for d in got) == sorted(e.event_id for e in events)
        for customer in {e.customer_id for e in events}:  # one partition, publish order
            mine = [d for d in got if d.event.customer_id == customer]
            assert len({d.partition for d in mine}) == 1
            assert [d.event.at for d in mine] == sorted(d.event.at for d in mine)
        assert await consumer.lag() == 0
        resumed = await reopened.consumer("t", [0], {0: max(d.position for d in got)})
        assert await resumed.fetch(100) == []

    asyncio.run(scenario())


def test_a_malformed_payload_reaches_the_consumer_as_rejected_not_lost(tmp_path) -> None:
    async def scenario() -> None:
        bus = EmbeddedBus(tmp_path / "bus.db", partitions=1)
        bus.publish_raw("bad-1", 0, b'{"type": "nope"}')
        await bus.publish([turn("c1")])
        consumer = await bus.consumer("t", [0], {})
        first, second = await consumer.fetch(10)
        assert first.event is None and first.error.reason == "unknown_type"
        assert second.event is not None and second.error is None

    asyncio.run(scenario())
