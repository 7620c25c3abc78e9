"""Turn events through the real ConversationStream into a throwaway Feast repo (online store).

A fresh copy of features/ with empty stores: `apply`, then every dialogue turn pushes the
customer's aggregates and the online read sees them at once. Feast's import costs ~10 s.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crm.conversation.events import BackgroundRecorder, stream_recorder
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


def test_every_turn_updates_the_customers_online_features(feast_project: Path, tmp_path) -> None:
    from features.store import ConversationStream, apply_definitions, open_store

    store = open_store(feast_project / "features")
    apply_definitions(store)
    stream = ConversationStream(store, feast_project / "data/events/conversations.db")
    known = {
        "change my pin": intent("change_pin", sentiment="positive"),
        "this is useless": intent("chat", 0.4, sentiment="negative", sentiment_confidence=0.7),
    }
    manager = make_manager(tmp_path, known, record_event=stream_recorder(stream))

    say(manager, "change my pin", channel="wecom", sender="wx", customer_id="C77")
    first = online(store, "C77")
    assert (first["messages_1d"], first["last_intent"], first["handoffs_30d"]) == (
        1,
        "change_pin",
        0,
    )

    say(manager, "this is useless", channel="web_chat", sender="tab", customer_id="C77")
    say(manager, "转人工", channel="web_chat", sender="tab", customer_id="C77")
    after = online(store, "C77")
    assert after["messages_1d"] == 3 and after["handoffs_30d"] == 1
    assert after["negative_share_30d"] == pytest.approx(1 / 3, abs=1e-3)
    assert "wecom" in str(after["channels_30d"]) and "web_chat" in str(after["channels_30d"])
    # an anonymous visitor has no customer entity: nothing is pushed for them
    say(manager, "change my pin", channel="web_chat", sender="anon")
    assert online(store, "C77")["messages_1d"] == 3


def test_the_gateways_recorder_pushes_off_the_reply_path_in_batches(
    feast_project: Path, tmp_path
) -> None:
    """`BackgroundRecorder` (what the gateway wires): the turn only queues its event; once the
    queue is drained every customer's features are online, batched into few pushes."""
    from features.conversations import ConversationEvent
    from features.store import ConversationStream, apply_definitions, open_store

    store = open_store(feast_project / "features")
    apply_definitions(store)
    stream = ConversationStream(store, tmp_path / "events.db")
    pushed: list[int] = []
    push = store.push
    store.push = lambda source, frame, **kw: (pushed.append(len(frame)), push(source, frame, **kw))
    recorder = BackgroundRecorder(stream)
    manager = make_manager(tmp_path, {"change my pin": intent("change_pin")}, record_event=recorder)
    for i in range(6):
        say(manager, "change my pin", channel="web_chat", sender=f"s{i}", customer_id=f"B{i % 3}")
    say(manager, "change my pin", channel="web_chat", sender="anon")  # no entity: not queued
    recorder.flush()
    assert [online(store, f"B{i}")["messages_1d"] for i in range(3)] == [2, 2, 2]
    assert sum(pushed) <= 6 and online(store, "B0")["last_intent"] == "change_pin"

    pushed.clear()
    now = datetime.now(UTC)
    events = [ConversationEvent(c, now, "wecom", "card_arrival", "neutral", False) for c in "XYX"]
    assert stream.record_many(events) == 2 and pushed == [2]  # one push, one row per customer
    assert online(store, "X")["messages_1d"] == 2 and online(store, "Y")["messages_1d"] == 1
