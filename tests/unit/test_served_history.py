"""Served history instead of synthetic history: the traffic plan, and the bus's turn history
written as the parquet `scrm features build` reads."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from events.embedded import EmbeddedBus
from features.conversations import conversation_stats
from pipelines.events import leader_lock, served_history, status
from pipelines.simulate import HANDOFF_TEXTS, plan
from tests.support import settings_at
from tests.unit.test_streams import turns


def test_the_traffic_plan_has_sessions_repeat_customers_and_handoffs() -> None:
    texts = [f"utterance {i}" for i in range(50)]
    customers = [f"c{i}" for i in range(1000)]
    messages = plan(texts, customers, 2000, seed=3)
    assert len(messages) == 2000 and plan(texts, customers, 2000, seed=3) == messages
    per_session = Counter(m.session_id for m in messages)
    assert 2.0 < len(messages) / len(per_session) < 4.0  # several turns per session
    sessions_per_customer = Counter(m.customer_id for m in {(m.session_id, m.customer_id):
                                    m for m in messages}.values())  # fmt: skip
    assert sessions_per_customer.most_common(1)[0][1] >= 10  # regulars come back
    handoffs = sum(m.text in HANDOFF_TEXTS for m in messages) / len(messages)
    assert 0.02 < handoffs < 0.09
    for session in list(per_session)[:50]:  # one customer per session
        assert len({m.customer_id for m in messages if m.session_id == session}) == 1


def test_served_history_is_the_bus_turns_in_a_stable_order(tmp_path: Path) -> None:
    settings = settings_at(tmp_path)
    events = turns(120, seed=4)
    bus = EmbeddedBus(settings.path(settings.events.log), settings.events.partitions)
    asyncio.run(bus.publish(events))
    result = served_history(settings)
    assert result == {"turns": 120, "customers": len({e.customer_id for e in events}),
                      "output": settings.features.conversation_events}  # fmt: skip
    path = settings.path(settings.features.conversation_events)
    first = pd.read_parquet(path)
    stats = conversation_stats(first)  # the offline source of conversation_stats
    assert len(stats) == 120 and set(stats["customer_id"]) == set(first["customer_id"])
    served_history(settings)  # nothing new: the same file content
    pd.testing.assert_frame_equal(first, pd.read_parquet(path))
    assert status(settings)["lag"]["turn_history"] == 0
    assert status(settings)["lag"]["conversation_aggregates"] == 120  # left to the app


def test_with_the_processors_running_elsewhere_history_waits_for_them(tmp_path: Path) -> None:
    settings = settings_at(tmp_path)
    bus = EmbeddedBus(settings.path(settings.events.log), settings.events.partitions)
    asyncio.run(bus.publish(turns(10)))
    held = leader_lock(settings)  # "the application" holds the processors' lock
    try:
        assert leader_lock(settings) is None
        from pipelines import events as module

        with pytest.raises(TimeoutError):
            asyncio.run(module._wait_for_history(settings, timeout_s=0.5))
    finally:
        held.close()
