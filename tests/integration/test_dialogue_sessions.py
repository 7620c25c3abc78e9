"""Session store with TTL (sqlite, Redis), cross-channel continuity, turn events."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from crm.conversation.sessions import RedisSessionStore, Session, SqliteSessionStore
from tests.unit.test_dialogue import intent, make_manager, say

REDIS_URL = "redis://127.0.0.1:6379/0"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sqlite_sessions_expire_after_their_ttl(tmp_path: Path) -> None:
    clock = Clock()
    store = SqliteSessionStore(tmp_path / "s.db", ttl_s=60, clock=clock)
    store.put(Session("k", "C1", "wecom", "wx", last_intent="card_arrival", flow={"name": "x"}))
    clock.now += 59
    assert store.get("k").last_intent == "card_arrival"
    store.put(store.get("k"))  # a write renews the TTL
    clock.now += 59
    assert store.get("k").flow == {"name": "x"}
    clock.now += 61
    assert store.get("k") is None
    store.put(Session("old", None, "web_chat", "b"))
    clock.now += 61
    assert store.purge() == 1


def test_expired_session_starts_a_fresh_conversation(tmp_path: Path) -> None:
    clock = Clock()
    store = SqliteSessionStore(tmp_path / "s.db", ttl_s=30, clock=clock)
    manager = make_manager(tmp_path, store=store)
    say(manager, "我的银行卡丢了")
    assert say(manager, "尾号1111").flow_status == "confirming"
    clock.now += 31
    assert say(manager, "确认").flow is None  # the half-done flow expired with the session


@pytest.fixture
def redis_store() -> RedisSessionStore:
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis server at {REDIS_URL}")
    store = RedisSessionStore(REDIS_URL, ttl_s=120, prefix=f"test:dialogue:{uuid.uuid4().hex}:")
    yield store
    for key in store.client.scan_iter(match=store.prefix + "*"):
        store.client.delete(key)


def test_redis_store_round_trips_and_sets_a_ttl(redis_store: RedisSessionStore) -> None:
    session = Session("customer:C1", "C1", "wecom", "wx", history=[{"role": "customer"}])
    redis_store.put(session)
    assert redis_store.get("customer:C1") == session
    assert 0 < redis_store.client.ttl(redis_store.prefix + "customer:C1") <= 120
    redis_store.delete("customer:C1")
    assert redis_store.get("customer:C1") is None


def test_a_flow_continues_across_channels_on_redis(tmp_path, redis_store) -> None:
    manager = make_manager(tmp_path, store=redis_store)
    assert say(manager, "我的银行卡丢了", channel="wecom", sender="wx", customer_id="C5").flow
    moved = say(manager, "尾号2468", channel="web_chat", sender="tab", customer_id="C5")
    assert moved.flow_status == "confirming" and moved.session_key == "customer:C5"


def test_same_customer_on_another_channel_continues_session_and_history(tmp_path) -> None:
    manager = make_manager(tmp_path)
    first = say(manager, "我要改手机号", channel="wecom", sender="wx-openid", customer_id="C9")
    second = say(manager, "尾号1357", channel="web_chat", sender="ws-77", customer_id="C9")
    assert first.session_key == second.session_key == "customer:C9"
    assert second.flow == "change_phone" and "手机号码" in second.text
    session = manager.store.get("customer:C9")
    channels = [h["channel"] for h in session.history if h["role"] == "customer"]
    assert channels == ["wecom", "web_chat"]
    # another customer on the same channel does not share it
    assert say(manager, "尾号1357", channel="web_chat", sender="ws-78").kind == "clarify"


def test_an_anonymous_session_is_adopted_once_the_customer_is_known(tmp_path) -> None:
    manager = make_manager(tmp_path)
    anonymous = say(manager, "查余额", channel="web_chat", sender="visitor")
    assert anonymous.session_key == "anon:web_chat:visitor"
    known = say(manager, "尾号9999", channel="web_chat", sender="visitor", customer_id="C3")
    assert known.session_key == "customer:C3" and known.flow_status == "confirming"
    assert manager.store.get("anon:web_chat:visitor") is None
    assert len(manager.store.get("customer:C3").history) == 4


def test_every_turn_reports_an_event(tmp_path: Path) -> None:
    events = []
    known = {"change my pin": intent("change_pin", sentiment="positive")}
    manager = make_manager(tmp_path, known, record_event=lambda *e: events.append(e))
    say(manager, "change my pin", channel="dingtalk", sender="d1", customer_id="C1")
    say(manager, "转人工", channel="dingtalk", sender="d1", customer_id="C1")
    say(manager, "还在吗", channel="dingtalk", sender="d1", customer_id="C1")
    say(manager, "hello", channel="web_chat", sender="anon")
    assert events == [
        ("C1", "dingtalk", "change_pin", "positive", False),
        ("C1", "dingtalk", "unknown", "neutral", True),
        ("C1", "dingtalk", None, None, False),  # waiting for an agent: no analysis
        (None, "web_chat", "unknown", "neutral", False),
    ]


def test_a_failing_event_hook_does_not_cost_the_reply(tmp_path: Path) -> None:
    def broken(*_):
        raise RuntimeError("feature store down")

    manager = make_manager(tmp_path, record_event=broken)
    assert say(manager, "信用卡怎么还款").kind == "answer"


def test_a_waiting_anonymous_visitor_keeps_their_ticket_once_identified(tmp_path: Path) -> None:
    delivered = []
    manager = make_manager(tmp_path, deliver=delivered.append)
    manager.desk.register("li", {"general"})
    waiting = say(manager, "转人工", channel="web_chat", sender="visitor")
    say(manager, "我是会员 C8", channel="web_chat", sender="visitor", customer_id="C8")
    assert manager.desk.get(waiting.ticket_id).session_key == "customer:C8"
    manager.accept(waiting.ticket_id, "li")
    manager.agent_reply(waiting.ticket_id, "li", "您好")
    assert (delivered[-1].text, delivered[-1].customer_id) == ("您好", "C8")


class SlowUnderstanding:
    def __init__(self, seconds: float):
        self.seconds = seconds

    def analyze(self, text: str):
        import time

        time.sleep(self.seconds)
        return intent("change_pin")


def test_conversations_run_in_parallel_but_one_conversations_turns_in_order(tmp_path) -> None:
    import threading
    import time

    manager = make_manager(tmp_path)
    manager.understanding = SlowUnderstanding(0.3)

    def timed(senders: list[str]) -> float:
        threads = [threading.Thread(target=say, args=(manager, "pin?", s)) for s in senders]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - started

    senders, stripes = [], set()  # four conversations that do not share a lock stripe
    for candidate in (f"s{i}" for i in range(100)):
        stripe = id(manager._locked(f"anon:web_chat:{candidate}"))
        if stripe not in stripes and len(senders) < 4:
            senders.append(candidate)
            stripes.add(stripe)
    assert timed(senders) < 0.9  # four conversations overlap (0.3 s each)
    assert timed(["e", "e", "e"]) >= 0.9  # one conversation's turns do not
    assert len(manager.store.get("anon:web_chat:e").history) == 6
