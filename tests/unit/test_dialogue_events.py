"""Dialogue turns -> the event bus -> the keyed consumer -> a throwaway Feast online store.

A fresh copy of features/ with empty stores: `apply`, then every dialogue turn is published
(durable before the reply) and the stream processors push the customer's aggregates online.
Feast's import costs ~10 s.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from crm.streams.recorder import BusRecorder, desk_events, processors
from crm.streams.runner import StreamRunner
from events.bus import BlockingPublisher
from events.embedded import EmbeddedBus
from settings.events import EventSettings
from tests.unit.test_dialogue import intent, make_manager, say

REPO = Path(__file__).resolve().parents[2]
VIEW = "conversation_stats"


@pytest.fixture(scope="module")
def feast_project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("feast")
    shutil.copytree(
        REPO / "features", root / "features", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "data" / "feast").mkdir(parents=True)
    return root


def online(store, customer_id: str) -> dict:
    names = ["messages_1d", "handoffs_30d", "negative_share_30d", "last_intent", "channels_30d"]
    rows = store.get_online_features(
        features=[f"{VIEW}:{name}" for name in names], entity_rows=[{"customer_id": customer_id}]
    ).to_dict()
    return {name: rows[name][0] for name in names}


def test_turns_reach_the_online_features_through_the_bus(feast_project: Path, tmp_path) -> None:
    from features.store import apply_definitions, open_store, push_conversation_rows

    store = open_store(feast_project / "features")
    apply_definitions(store)
    bus = BlockingPublisher(lambda: EmbeddedBus(tmp_path / "bus.db", partitions=4))
    known = {
        "change my pin": intent("change_pin", sentiment="positive"),
        "this is useless": intent("chat", 0.4, sentiment="negative", sentiment_confidence=0.7),
    }
    manager = make_manager(tmp_path, known, record_event=BusRecorder(bus.publish))
    say(manager, "change my pin", channel="wecom", sender="wx", customer_id="C77")
    say(manager, "this is useless", channel="web_chat", sender="tab", customer_id="C77")
    say(manager, "转人工", channel="web_chat", sender="tab", customer_id="C77")
    say(manager, "change my pin", channel="web_chat", sender="anon")  # anonymous: no event
    # durable before the replies: a new process reading the log sees every turn already
    stored = asyncio.run(EmbeddedBus(tmp_path / "bus.db", partitions=4).stats())["events"]
    assert stored == 4  # 3 turns + the handoff request

    pushed: list[int] = []

    def push(rows: list[dict]) -> None:
        pushed.append(push_conversation_rows(store, rows))

    async def apply() -> None:
        runner = StreamRunner(bus.bus, tmp_path / "derived.db", processors(EventSettings(), push))
        await runner.run_until_idle(timeout_s=0)
        await runner.close()

    asyncio.run_coroutine_threadsafe(apply(), bus.loop).result(60)
    after = online(store, "C77")
    assert after["messages_1d"] == 3 and after["handoffs_30d"] == 1
    assert after["last_intent"] == "unknown"  # the handoff turn: no intent of its own
    assert after["negative_share_30d"] == pytest.approx(1 / 3, abs=1e-3)
    assert after["channels_30d"] == "web_chat,wecom"
    assert sum(pushed) >= 1
    bus.close()


def test_desk_actions_become_handoff_and_agent_events() -> None:
    ticket = {"id": "T1", "customer_id": "C1"}
    assert [e.type for e in desk_events("accept", {"agent_id": "li"}, ticket, "t")] == [
        "handoff.assigned"
    ]
    assert desk_events("reply", {"agent_id": "li"}, ticket, "t")[0].type == "agent.replied"
    assert desk_events("close", {"agent_id": "li"}, ticket, "t")[0].type == "handoff.resolved"
    assert desk_events("queue", {}, ticket, "t") == []
    assert desk_events("accept", {"agent_id": "li"}, {"id": "T2"}, "t") == []
