"""A scripted conversation through the running gateway: web chat -> durable intake -> dialogue
(models through the Serve deployments) -> knowledge-base answer, task flow, handoff to a human
agent and back, with the agent's reply delivered to the customer's chat session."""

from __future__ import annotations

import time
import uuid

import httpx

SESSIONS: dict[str, str] = {}  # session id -> its token (server-issued)


def say(client: httpx.Client, session: str, text: str) -> dict:
    body = {"text": text, "message_id": uuid.uuid4().hex}
    answer = client.post("/v1/channels/web_chat/messages", json=body,
                         headers={"X-Chat-Session": SESSIONS[session]})  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.json()


def new_session(client: httpx.Client) -> str:
    opened = client.post("/v1/channels/web_chat/sessions", json={})
    assert opened.status_code == 200, opened.text
    SESSIONS[opened.json()["session_id"]] = opened.json()["session_token"]
    return opened.json()["session_id"]


def test_a_faq_question_is_answered_from_the_knowledge_base(client: httpx.Client) -> None:
    reply = say(client, new_session(client), "明天上海会下雨吗")
    assert reply["dialogue"]["kind"] == "answer" and reply["reply"]
    assert reply["intent"]["label"] == "weather" and not reply["handoff"]


def test_a_task_flow_fills_its_slot_confirms_and_completes(client: httpx.Client) -> None:
    session = new_session(client)
    asked = say(client, session, "I lost my card")
    assert asked["dialogue"]["kind"] == "task" and "card" in asked["reply"].lower()
    confirm = say(client, session, "6222 0202 0011 2233")
    assert "2233" in confirm["reply"] and confirm["dialogue"]["flow"] == "report_lost_card"
    done = say(client, session, "yes")
    assert done["dialogue"]["flow_status"] == "done" and "reference" in done["reply"]


def test_handoff_to_an_agent_and_back(client: httpx.Client) -> None:
    agent = f"agent-{uuid.uuid4().hex[:6]}"
    registered = client.put(
        f"/v1/agent/agents/{agent}", json={"skills": ["general", "cards", "accounts"]}
    )
    assert registered.status_code == 200, registered.text
    session = new_session(client)
    queued = say(client, session, "转人工")
    assert queued["handoff"] and queued["dialogue"]["queue_position"] >= 1
    ticket = queued["dialogue"]["ticket_id"]
    # The desk may have assigned it to an agent still on duty from another test (least load).
    agent = client.get(f"/v1/agent/tickets/{ticket}").json()["agent_id"] or agent
    accepted = client.post(f"/v1/agent/tickets/{ticket}/accept", json={"agent_id": agent})
    assert accepted.status_code == 200 and accepted.json()["state"] == "open"

    silent = say(client, session, "我的卡被冻结了")
    assert silent["reply"] == ""  # an agent owns the conversation: the bot says nothing
    text = "您好，我是客服小王，马上为您处理。"
    sent = client.post(f"/v1/agent/tickets/{ticket}/reply", json={"agent_id": agent, "text": text})
    assert sent.status_code == 200, sent.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        history = client.get(f"/v1/channels/web_chat/sessions/{session}").json()["history"]
        if any(item.get("text") == text for item in history):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the agent's reply never reached the chat session: {history}")

    closed = client.post(f"/v1/agent/tickets/{ticket}/close", json={"agent_id": agent})
    assert closed.status_code == 200 and closed.json()["state"] == "resolved"
    back = say(client, session, "明天上海会下雨吗")
    assert back["dialogue"]["kind"] == "answer" and not back["handoff"]  # the bot is back


def test_a_vendor_retry_is_answered_once(client: httpx.Client) -> None:
    message_id = f"retry-{uuid.uuid4().hex[:8]}"
    session = new_session(client)
    body = {"text": "明天上海会下雨吗", "message_id": message_id}
    chat = {"X-Chat-Session": SESSIONS[session]}
    first = client.post("/v1/channels/web_chat/messages", json=body, headers=chat).json()
    again = client.post("/v1/channels/web_chat/messages", json=body, headers=chat).json()
    assert again["reply"] == first["reply"]
    history = client.get(f"/v1/channels/web_chat/sessions/{session}").json()["history"]
    assert sum(item.get("text") == body["text"] for item in history) == 1


def test_two_conversation_replicas_serve_one_conversation_alternately(client: httpx.Client):
    """The Conversation deployment runs two replicas here (integration conftest); its state is
    in the session store, so a task flow whose turns land on different replicas still fills
    its slot, confirms and completes."""
    for _ in range(12):
        session = new_session(client)
        turns = [say(client, session, text) for text in ("I lost my card", "6222 0202 0011 2233")]
        turns.append(say(client, session, "yes"))
        replicas = [turn["dialogue"]["served_by"] for turn in turns]
        if len(set(replicas)) > 1:
            break
    else:
        raise AssertionError(f"every turn of 12 flows landed on one replica: {replicas}")
    assert turns[1]["dialogue"]["flow"] == "report_lost_card" and "2233" in turns[1]["reply"]
    assert turns[2]["dialogue"]["flow_status"] == "done", (replicas, turns)
