"""Handoff as a conversation state: triggers, queue, assignment, the agent API, delivery."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from crm.conversation import Outbound
from crm.conversation.desk import LocalDesk
from crm.conversation.desk_routes import agent_router
from crm.conversation.handoff import HandoffDesk
from crm.conversation.sessions import BOT, OPEN, PENDING, RESOLVED
from tests.unit.test_dialogue import intent, make_manager, say

ANGRY = "你们这服务太差了，气死我了"


def test_explicit_request_queues_and_tells_each_customer_their_place(tmp_path: Path) -> None:
    manager = make_manager(tmp_path)
    first = say(manager, "转人工", sender="a")
    second = say(manager, "I want a human", sender="b")
    assert (first.kind, first.state, first.queue_position) == ("handoff", PENDING, 1)
    assert second.queue_position == 2 and "number 2" in second.text
    assert "第 1 位" in first.text
    # while waiting, the bot does not answer: the customer hears their place again
    waiting = say(manager, "信用卡怎么还款", sender="b")
    assert waiting.kind == "queued" and waiting.queue_position == 2
    assert manager.desk.get(second.ticket_id).transcript[-1]["text"] == "信用卡怎么还款"


def test_negative_sentiment_hands_off_only_above_the_threshold(tmp_path: Path) -> None:
    known = {
        ANGRY: intent("chat", 0.5, sentiment="negative", sentiment_confidence=0.95),
        "还行吧，有点慢": intent("chat", 0.9, sentiment="negative", sentiment_confidence=0.6),
    }
    manager = make_manager(tmp_path, known)
    assert say(manager, "还行吧，有点慢", sender="calm").kind == "chitchat"
    upset = say(manager, ANGRY, sender="angry")
    assert upset.kind == "handoff" and upset.handoff_reason == "negative_sentiment"


def test_negative_sentiment_of_an_understood_request_does_not_hand_off(tmp_path: Path) -> None:
    """A binary sentiment model calls neutral questions negative: the request is served."""
    known = {
        "I lost my card": intent(
            "lost_or_stolen_card", 0.97, sentiment="negative", sentiment_confidence=0.95
        )
    }
    manager = make_manager(tmp_path, known)
    served = say(manager, "I lost my card", sender="plain")
    assert served.kind == "task" and served.handoff_reason is None


def test_high_value_customer_goes_to_a_human_at_once_and_ahead_of_the_queue(tmp_path) -> None:
    values = {"vip": 12000.0, "regular": 80.0}
    manager = make_manager(tmp_path, value_of=values.get)
    say(manager, "转人工", sender="early")  # an ordinary ticket already waiting
    regular = say(manager, "qqq zzz", sender="r", customer_id="regular")
    assert regular.kind == "clarify"  # one unclear turn is not enough for others
    vip = say(manager, "qqq zzz", sender="v", customer_id="vip")
    assert vip.kind == "handoff" and vip.handoff_reason == "high_value"
    assert vip.queue_position == 1
    assert manager.desk.get(vip.ticket_id).priority == 1


def test_assignment_by_skill_then_least_load() -> None:
    desk = HandoffDesk(fallback_skill="general")
    desk.register("card_expert", {"cards"}, capacity=2)
    desk.register("generalist", {"general"}, capacity=5)
    desk.register("busy_generalist", {"general"}, capacity=5)
    desk.open("s0", "general", "requested")  # -> busy_generalist or generalist
    first_cards = desk.open("s1", "cards", "flow_failed")
    assert first_cards.agent_id == "card_expert"  # specialist first at equal load
    second_cards = desk.open("s2", "cards", "flow_failed")
    # card_expert has 1, the idle generalist 0: least load wins (general covers any skill)
    assert second_cards.agent_id in {"generalist", "busy_generalist"}
    loads = {a.id: a.load for a in desk.agents.values()}
    assert loads == {"card_expert": 1, "generalist": 1, "busy_generalist": 1}
    desk.register("only_accounts", {"accounts"}, capacity=1)
    desk.agents["generalist"].capacity = desk.agents["busy_generalist"].capacity = 1
    desk.agents["card_expert"].capacity = 1
    waiting = desk.open("s3", "cards", "requested")
    assert waiting.agent_id is None  # nobody with the skill has room: it waits
    desk.accept(first_cards.id, "card_expert")
    desk.finish(first_cards.id, "card_expert", "resolved")
    assert waiting.agent_id == "card_expert"  # assigned when the expert freed up


def agent_app(tmp_path: Path, **kwargs):
    delivered: list[Outbound] = []
    manager = make_manager(tmp_path, deliver=delivered.append, **kwargs)
    app = FastAPI()
    app.include_router(agent_router(LocalDesk(manager)))
    return manager, TestClient(app), delivered


def test_agent_api_accept_reply_close_and_the_bot_stays_silent(tmp_path: Path) -> None:
    manager, client, delivered = agent_app(tmp_path)
    assert client.put("/v1/agent/agents/li", json={"skills": ["general"]}).status_code == 200
    handoff = say(manager, "转人工", channel="wecom", sender="wx-1", customer_id="C42")
    queue = client.get("/v1/agent/queue").json()
    assert [t["id"] for t in queue] == [handoff.ticket_id]
    assert queue[0]["agent_id"] == "li" and queue[0]["position"] == 1

    accepted = client.post(f"/v1/agent/tickets/{handoff.ticket_id}/accept", json={"agent_id": "li"})
    assert accepted.status_code == 200 and accepted.json()["state"] == "open"
    assert manager.store.get("customer:C42").state == OPEN
    assert "li" in delivered[-1].text and delivered[-1].channel == "wecom"

    # an answerable question now goes to the agent, not the bot
    silent = say(manager, "信用卡怎么还款", channel="wecom", sender="wx-1", customer_id="C42")
    assert silent.text is None and silent.kind == "with_agent"
    ticket = client.get(f"/v1/agent/tickets/{handoff.ticket_id}").json()
    assert ticket["transcript"][-1]["text"] == "信用卡怎么还款"

    answer = {"agent_id": "li", "text": "您可以在手机银行还款。"}
    assert (
        client.post(f"/v1/agent/tickets/{handoff.ticket_id}/reply", json=answer).status_code == 200
    )
    assert (delivered[-1].text, delivered[-1].role) == ("您可以在手机银行还款。", "agent")
    assert (delivered[-1].channel, delivered[-1].sender_id) == ("wecom", "wx-1")

    closed = client.post(f"/v1/agent/tickets/{handoff.ticket_id}/close", json={"agent_id": "li"})
    assert closed.json()["state"] == RESOLVED
    assert manager.store.get("customer:C42").state == RESOLVED
    back = say(manager, "信用卡怎么还款", channel="wecom", sender="wx-1", customer_id="C42")
    assert back.kind == "answer" and back.state == BOT  # a new question: the bot again


def test_agent_reply_reaches_the_channel_the_customer_moved_to(tmp_path: Path) -> None:
    manager, client, delivered = agent_app(tmp_path)
    client.put("/v1/agent/agents/wang", json={"skills": ["general"], "capacity": 1})
    handoff = say(manager, "人工客服", channel="wecom", sender="wx-9", customer_id="C7")
    client.post(f"/v1/agent/tickets/{handoff.ticket_id}/accept", json={"agent_id": "wang"})
    say(manager, "我换到网页上了", channel="web_chat", sender="browser-3", customer_id="C7")
    client.post(
        f"/v1/agent/tickets/{handoff.ticket_id}/reply", json={"agent_id": "wang", "text": "好的"}
    )
    assert (delivered[-1].channel, delivered[-1].sender_id) == ("web_chat", "browser-3")


def test_transfer_back_to_the_bot(tmp_path: Path) -> None:
    manager, client, delivered = agent_app(tmp_path)
    client.put("/v1/agent/agents/li", json={"skills": ["general"]})
    handoff = say(manager, "human please", sender="x")
    client.post(f"/v1/agent/tickets/{handoff.ticket_id}/accept", json={"agent_id": "li"})
    back = client.post(
        f"/v1/agent/tickets/{handoff.ticket_id}/transfer-to-bot", json={"agent_id": "li"}
    )
    assert back.json()["state"] == BOT and "assistant" in delivered[-1].text
    assert say(manager, "信用卡怎么还款", sender="x").kind == "answer"


def test_agent_api_rejects_what_does_not_fit(tmp_path: Path) -> None:
    manager, client, _ = agent_app(tmp_path)
    client.put("/v1/agent/agents/li", json={"skills": ["general"]})
    client.put("/v1/agent/agents/zhao", json={"skills": ["general"]})
    handoff = say(manager, "转人工", sender="y")
    url = f"/v1/agent/tickets/{handoff.ticket_id}"
    assert (
        client.post("/v1/agent/tickets/T999999/accept", json={"agent_id": "li"}).status_code == 404
    )
    assert client.post(f"{url}/accept", json={"agent_id": "nobody"}).status_code == 404
    reply = client.post(f"{url}/reply", json={"agent_id": "li", "text": "hi"})
    assert reply.status_code == 409 and "not open" in reply.json()["detail"]
    assigned = manager.desk.get(handoff.ticket_id).agent_id
    other = "zhao" if assigned == "li" else "li"
    assert client.post(f"{url}/accept", json={"agent_id": other}).status_code == 409
    assert client.post(f"{url}/accept", json={"agent_id": assigned}).status_code == 200
    blank = client.post(f"{url}/reply", json={"agent_id": assigned, "text": "  "})
    assert blank.status_code == 422 and "empty" in blank.text
    assert client.put("/v1/agent/agents/x", json={"skills": []}).status_code == 422


def test_a_sqlite_desk_is_shared_between_processes_and_survives_a_restart(tmp_path) -> None:
    path = tmp_path / "desk.db"
    gateway_a, gateway_b = HandoffDesk(path=path), HandoffDesk(path=path)
    first = gateway_a.open("customer:C1", "cards", "requested", transcript=[{"text": "hi"}])
    second = gateway_b.open("customer:C2", "general", "low_confidence")
    assert (first.id, second.id) == ("T000001", "T000002")  # one sequence for both
    assert [t.id for t in gateway_b.queue()] == ["T000001", "T000002"]
    gateway_b.register("li", {"cards"}, capacity=1)
    assert gateway_a.get(first.id).agent_id == "li"  # assigned in b, seen by a
    gateway_a.accept(first.id, "li")
    gateway_b.note(first.id, {"role": "agent", "text": "您好"})
    restarted = HandoffDesk(path=path)
    ticket = restarted.get(first.id)
    assert (ticket.state, [e["text"] for e in ticket.transcript]) == ("open", ["hi", "您好"])
    assert restarted.position(second.id) == 1 and restarted.agent("li").load == 1
    restarted.finish(first.id, "li", "resolved")
    assert gateway_a.get(first.id).state == "resolved"


def test_a_dialogue_on_a_sqlite_desk_hands_off_and_lets_the_agent_answer(tmp_path) -> None:
    from crm.conversation import DialogueConfig
    from privacy.atrest import open_cipher
    from settings.dialogue import HandoffConfig
    from settings.privacy import PrivacyConfig

    config = DialogueConfig(handoff=HandoffConfig(desk_path=str(tmp_path / "desk.db")))
    delivered = []
    cipher = open_cipher(tmp_path, PrivacyConfig())
    manager = make_manager(tmp_path, config=config, deliver=delivered.append, cipher=cipher)
    # build_dialogue resolves desk_path against the repo root; an absolute path stays put
    assert manager.desk.db is not None and (tmp_path / "desk.db").is_file()
    manager.desk.register("li", {"general"})
    handoff = say(manager, "转人工", sender="z")
    manager.accept(handoff.ticket_id, "li")
    assert say(manager, "在吗", sender="z").text is None
    manager.agent_reply(handoff.ticket_id, "li", "在的")
    # another process reads the same desk file (tickets are encrypted: it needs the keys too)
    other = HandoffDesk(path=tmp_path / "desk.db", cipher=manager.desk.cipher)
    texts = [e["text"] for e in other.get(handoff.ticket_id).transcript]
    assert texts[-2:] == ["在吗", "在的"] and delivered[-1].text == "在的"
