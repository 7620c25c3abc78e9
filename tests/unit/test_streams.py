"""Keyed stream processors over the embedded bus: aggregates, history, counters, replay."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from prometheus_client import REGISTRY

from crm.streams.aggregates import ConversationAggregates, aggregate_rows, late_turns
from crm.streams.counters import AnalyticsCounters, counts
from crm.streams.history import TurnHistory, history_frame
from crm.streams.runner import StreamRunner
from events.checkpoint import open_derived
from events.embedded import EmbeddedBus
from events.schemas import ReplySent, TurnRecorded
from features.conversations import conversation_stats

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def turns(n: int = 300, customers: int = 12, seed: int = 7) -> list[TurnRecorded]:
    rng = random.Random(seed)
    return [
        TurnRecorded(
            customer_id=f"c{rng.randrange(customers)}",
            at=T0 + timedelta(hours=i * 3 + rng.random()),
            channel=rng.choice(["wecom", "dingtalk", "web_chat"]),
            intent=rng.choice(["balance", "card_lost", None]),
            sentiment=rng.choice(["negative", "neutral", "positive", None]),
            handoff=rng.random() < 0.1,
        )
        for i in range(n)
    ]


def processors(lateness: float = 3600.0) -> list:
    return [ConversationAggregates(lateness), TurnHistory(), AnalyticsCounters()]


def run(bus: EmbeddedBus, derived: Path, workers: int = 2, batch: int = 50, lateness=3600.0):
    async def go() -> int:
        runner = StreamRunner(bus, derived, processors(lateness), workers=workers, batch=batch)
        read = await runner.run_until_idle(timeout_s=0)
        await runner.close()
        return read

    return asyncio.run(go())


def snapshot(derived: Path) -> tuple:
    db = open_derived(derived)
    try:
        return aggregate_rows(db), history_frame(db).to_dict("list"), counts(db), late_turns(db)
    finally:
        db.close()


def test_aggregates_equal_the_batch_path_for_every_customer(tmp_path: Path) -> None:
    events = turns()
    bus = EmbeddedBus(tmp_path / "bus.db", partitions=4)
    asyncio.run(bus.publish(events))
    run(bus, tmp_path / "derived.db")
    rows, history, _, late = snapshot(tmp_path / "derived.db")
    frame = pd.DataFrame([{k: getattr(e, k) for k in
                           ["customer_id", "at", "channel", "intent", "sentiment", "handoff"]}
                          for e in events])  # fmt: skip
    batch = conversation_stats(frame).groupby("customer_id").tail(1).set_index("customer_id")
    assert late == 0 and len(history["customer_id"]) == len(events)
    assert set(rows) == set(batch.index)
    for customer, row in rows.items():
        expected = batch.loc[customer]
        for name in ["messages_1d", "messages_7d", "messages_30d", "handoffs_30d",
                     "last_message_ts", "channels_30d", "last_intent"]:  # fmt: skip
            assert row[name] == expected[name], (customer, name)
        share = expected["negative_share_30d"]
        assert row["negative_share_30d"] == (None if pd.isna(share) else share)


def test_out_of_order_turns_within_lateness_count_and_late_ones_do_not(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus.db", partitions=1)
    now = T0 + timedelta(days=3)
    sent = [
        TurnRecorded(customer_id="a", channel="wecom", at=now),
        TurnRecorded(customer_id="a", channel="dingtalk", at=now - timedelta(minutes=30)),
        TurnRecorded(customer_id="b", channel="wecom", at=now - timedelta(hours=5)),  # late
    ]
    asyncio.run(bus.publish(sent))
    run(bus, tmp_path / "derived.db", workers=1)
    rows, history, _, late = snapshot(tmp_path / "derived.db")
    assert rows["a"]["messages_1d"] == 2 and rows["a"]["channels_30d"] == "dingtalk,wecom"
    assert "b" not in rows and late == 1
    assert len(history["customer_id"]) == 3  # the late turn is still in the offline history


def test_replay_from_the_start_rebuilds_every_derived_store_identically(tmp_path: Path) -> None:
    events = turns(400, seed=3)
    shuffled = events[:]
    random.Random(1).shuffle(shuffled)  # out of order, some beyond the lateness
    replies = [ReplySent(customer_id=e.customer_id, channel=e.channel, at=e.at) for e in events]
    bus = EmbeddedBus(tmp_path / "bus.db", partitions=8)
    for start in range(0, len(shuffled), 37):
        asyncio.run(bus.publish(shuffled[start : start + 37] + replies[start : start + 37]))
    run(bus, tmp_path / "first.db", workers=2, batch=64)
    run(bus, tmp_path / "first.db", workers=2, batch=64)  # nothing new: nothing changes
    run(bus, tmp_path / "replay.db", workers=3, batch=17)  # other workers and batch sizes
    first, replay = snapshot(tmp_path / "first.db"), snapshot(tmp_path / "replay.db")
    assert first == replay
    assert first[2] == {"turn.recorded": 400, "reply.sent": 400}
    assert first[3] > 0  # the shuffle made some turns late: they are part of what must agree


def test_a_redelivered_batch_is_not_applied_twice_and_lag_is_exported(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus.db", partitions=2)
    asyncio.run(bus.publish(turns(50)))
    derived = tmp_path / "derived.db"
    run(bus, derived)
    before = snapshot(derived)

    async def redeliver() -> int:
        runner = StreamRunner(bus, derived, processors(), workers=1, batch=100)
        for worker in runner.workers:  # a consumer that lost its acks: reads from the start
            worker.consumer = await bus.consumer(worker.processor.name, worker.partitions, {})
        read = await runner.run_until_idle(timeout_s=0)
        await runner.close()
        return read

    assert asyncio.run(redeliver()) == 150  # 50 events x 3 consumers, all redelivered
    assert snapshot(derived) == before
    asyncio.run(bus.publish(turns(5, seed=99)))

    async def lag() -> dict:
        runner = StreamRunner(bus, derived, processors(), workers=1)
        found = await runner.observe()
        await runner.close()
        return found

    assert asyncio.run(lag())["conversation_aggregates"] == 5
    gauge = REGISTRY.get_sample_value(
        "scrm_bus_consumer_lag_events", {"consumer": "turn_history", "engine": "embedded"}
    )
    assert gauge == 5


def test_an_erasure_request_removes_the_customer_from_the_derived_stores(tmp_path: Path) -> None:
    from events.schemas import ErasureRequested

    bus = EmbeddedBus(tmp_path / "bus.db", partitions=2)
    asyncio.run(bus.publish(turns(40, customers=3)))
    asyncio.run(bus.publish([ErasureRequested(customer_id="c1", requested_by="dpo")]))
    run(bus, tmp_path / "derived.db")
    rows, history, _, _ = snapshot(tmp_path / "derived.db")
    assert "c1" not in rows and "c1" not in history["customer_id"]
    assert {"c0", "c2"} <= set(rows)


def test_one_stream_service_of_the_host_applies_the_others_stand_by(tmp_path: Path) -> None:
    import time

    from crm.streams.recorder import BusRecorder, StreamService, publisher
    from settings.events import EventSettings

    config = EventSettings(partitions=2)
    pushed: list[dict] = []
    first, second = publisher(config, tmp_path), publisher(config, tmp_path)
    services = [StreamService(config, tmp_path, bus, pushed.extend) for bus in (first, second)]
    try:
        record = BusRecorder(second.publish)
        for i in range(6):
            record(f"c{i % 2}", "wecom", "balance", "neutral", i == 5)
        deadline = time.monotonic() + 20
        while len({row["customer_id"] for row in pushed}) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        rows, history, counted, _ = snapshot(tmp_path / config.derived_db)
        assert {c: r["messages_1d"] for c, r in rows.items()} == {"c0": 3, "c1": 3}
        assert counted == {"turn.recorded": 6, "handoff.requested": 1}  # applied once
        assert not any(s.future.done() for s in services)  # one runs, one waits its turn
    finally:
        for service in services:
            service.close()
        first.close()
        second.close()
