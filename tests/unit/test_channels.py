"""Channel routes end to end over FastAPI: web chat (HTTP + WebSocket), identities, intake,
the channel service. WeCom and DingTalk: test_channels_vendors.py.

A stub dialogue handler stands in for the gateway's; it records what it saw, so the tests can
tell a handled message from one answered out of the intake log.
"""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from crm.channels.identity import IdentityMap
from crm.channels.routes import channel_router
from crm.channels.service import ChannelService
from crm.channels.webchat import ChatTranscript, WebChatAdapter
from crm.channels.wecom import WeComCrypto
from crm.intake import SqliteIntake
from crm.messages import InboundMessage, Reply
from tests.unit.conftest import AES_KEY, CORP, SECRET, TOKEN, Dialogue
from tests.unit.test_channels_vendors import post_wecom, wecom_text


def test_unsupported_channel_is_400_naming_the_supported_ones(setup) -> None:
    client, _, _ = setup
    answer = client.post("/v1/channels/fax/messages", json={"text": "hi"})
    assert answer.status_code == 400
    assert (
        answer.json()["detail"] == "Unsupported channel: fax; supported: dingtalk, web_chat, wecom"
    )


def test_known_channel_without_secrets_is_503_naming_the_variables(setup) -> None:
    client, _, _ = setup
    answer = client.post("/v1/channels/mqtt_http/messages", json={})
    assert answer.status_code == 503 and "set X" in answer.json()["detail"]


def test_web_chat_http_turn_and_bad_payloads(setup) -> None:
    client, _, _ = setup
    answer = client.post(
        "/v1/channels/web_chat/messages",
        json={"session_id": "s-1", "text": " 你好 ", "message_id": "w-1"},
    )
    assert answer.status_code == 200
    body = answer.json()
    assert (body["session_id"], body["message_id"], body["reply"]) == ("s-1", "w-1", "收到：你好")
    assert body["customer_id"].startswith("anon-") and body["intent"] == {"label": "echo"}
    assert client.post("/v1/channels/web_chat/messages", json={"text": "x"}).status_code == 422
    assert client.post("/v1/channels/web_chat/messages", content=b"{oops").status_code == 422
    long = client.post(
        "/v1/channels/web_chat/messages", json={"session_id": "s", "text": "x" * 600}
    )
    assert long.status_code == 413 and "at most 512" in long.json()["detail"]


def test_web_chat_websocket_resumes_the_session_after_reconnect(setup) -> None:
    client, _, dialogue = setup
    with client.websocket_connect("/v1/channels/web_chat/ws") as socket:
        hello = socket.receive_json()
        session = hello["session_id"]
        assert hello["type"] == "session" and hello["history"] == []
        socket.send_text(json.dumps({"text": "我想查余额", "message_id": "ws-1"}))
        first = socket.receive_json()
        assert first["type"] == "reply" and first["reply"] == "收到：我想查余额"
        socket.send_text("not json")
        error = socket.receive_json()
        assert (error["type"], error["status"]) == ("error", 422)
        assert error["detail"].startswith("frame: not valid JSON")
    with client.websocket_connect(f"/v1/channels/web_chat/ws?session_id={session}") as socket:
        hello = socket.receive_json()
        assert [(h["role"], h["text"]) for h in hello["history"]] == [
            ("customer", "我想查余额"),
            ("bot", "收到：我想查余额"),
        ]
        socket.send_text(json.dumps({"text": "还有转账", "message_id": "ws-2"}))
        second = socket.receive_json()
    # Same session -> same customer id, so the dialogue continues the same conversation.
    assert second["customer_id"] == first["customer_id"]
    assert [m.customer_id for m in dialogue.seen] == [first["customer_id"]] * 2
    history = client.get(f"/v1/channels/web_chat/sessions/{session}").json()["history"]
    assert len(history) == 4


def test_customer_moving_from_wecom_to_web_chat_keeps_one_customer_id(setup) -> None:
    client, service, dialogue = setup
    crypto = WeComCrypto(TOKEN, AES_KEY, CORP)
    # The bank binds the WeCom external user to its CRM id (e.g. at account opening).
    service.identity.link(CORP, "wecom", "ext-user-9", "C-1001")
    post_wecom(client, crypto, wecom_text("ext-user-9", "我的卡丢了", "900010"))
    # Later, logged into the web site (web chat tenant binds to the same CRM id).
    web = client.post(
        "/v1/channels/web_chat/messages",
        json={"session_id": "browser-5", "text": "继续刚才的", "customer_id": "C-1001"},
    )
    follow_up = client.post(
        "/v1/channels/web_chat/messages", json={"session_id": "browser-5", "text": "好的"}
    )
    assert web.json()["customer_id"] == follow_up.json()["customer_id"] == "C-1001"
    assert [m.customer_id for m in dialogue.seen] == ["C-1001"] * 3
    assert [m.channel for m in dialogue.seen] == ["wecom", "web_chat", "web_chat"]


def test_identity_link_route_binds_a_sender_to_a_crm_id(setup) -> None:
    client, service, dialogue = setup
    linked = client.put("/v1/channels/wecom/identities/ext-user-3", json={"customer_id": "C-3"})
    assert linked.status_code == 200, linked.text
    assert linked.json()["identities"] == [{"channel": "wecom", "sender_id": "ext-user-3"}]
    assert service.identity.lookup(CORP, "wecom", "ext-user-3") == "C-3"  # WeCom: corp tenant
    crypto = WeComCrypto(TOKEN, AES_KEY, CORP)
    post_wecom(client, crypto, wecom_text("ext-user-3", "我的卡丢了", "900031"))
    assert dialogue.seen[-1].customer_id == "C-3"
    fax = client.put("/v1/channels/fax/identities/u", json={"customer_id": "C-3"})
    assert fax.status_code == 400 and "Unsupported channel: fax" in fax.json()["detail"]
    bad = client.put("/v1/channels/wecom/identities/u", json={"customer_id": "C 3; drop"})
    assert bad.status_code == 422


def test_identity_map_mints_once_and_links(tmp_path) -> None:
    identity = IdentityMap(tmp_path / "id.db")
    first = identity.resolve("t", "wecom", "u1")
    assert identity.resolve("t", "wecom", "u1") == first and first.startswith("anon-")
    assert identity.resolve("t", "wecom", "u2") != first
    assert identity.resolve("other-tenant", "wecom", "u1") != first
    identity.link("t", "web_chat", "sess", "C-7")
    identity.link("t", "wecom", "u1", "C-7")
    assert identity.identities("t", "C-7") == [("web_chat", "sess"), ("wecom", "u1")]
    identity.close()
    assert IdentityMap(tmp_path / "id.db").lookup("t", "wecom", "u1") == "C-7"  # persisted


def test_async_mode_acknowledges_first_and_the_worker_answers_later(tmp_path) -> None:
    import asyncio

    from crm.intake.worker import IntakeWorker

    service = ChannelService(
        [WebChatAdapter()],
        IdentityMap(tmp_path / "c.db"),
        SqliteIntake(tmp_path / "i.db"),
        ChatTranscript(tmp_path / "c.db"),
        mode="async",
    )
    app = FastAPI()
    dialogue = Dialogue()
    app.include_router(channel_router(service, dialogue))
    client = TestClient(app)
    answer = client.post(
        "/v1/channels/web_chat/messages",
        json={"session_id": "s-9", "text": "帮我改手机号", "message_id": "a-1"},
    )
    assert answer.status_code == 202 and answer.json()["status"] == "accepted"
    assert dialogue.seen == [] and service.intake.counts()["pending"] == 1
    worker = IntakeWorker(service.intake, dialogue, deliver=service.deliver)
    asyncio.run(worker.run(until_idle=True))
    history = client.get("/v1/channels/web_chat/sessions/s-9").json()["history"]
    assert [(h["role"], h["text"]) for h in history] == [
        ("customer", "帮我改手机号"),
        ("bot", "收到：帮我改手机号"),
    ]
    service.close()


def test_failing_dialogue_leaves_the_message_for_the_worker(setup) -> None:
    client, service, dialogue = setup

    async def broken(message: InboundMessage) -> Reply:
        raise RuntimeError("dialogue down")

    dialogue.instead = broken
    answer = client.post(
        "/v1/channels/web_chat/messages", json={"session_id": "s", "text": "hi", "message_id": "f1"}
    )
    assert answer.status_code == 202 and answer.json()["reply"] is None
    status = service.intake.status("web_chat", "f1")
    assert status["state"] == "pending" and "dialogue down" in status["last_error"]


def test_agent_message_reaches_an_open_socket_and_the_resumed_session(setup) -> None:
    client, service, _ = setup
    with client.websocket_connect("/v1/channels/web_chat/ws?session_id=live-1") as socket:
        socket.receive_json()
        socket.send_text(json.dumps({"text": "转人工", "message_id": "h-1"}))
        socket.receive_json()
        # A human agent answers from the desk (another thread): pushed on the open socket.
        service.push_soon("web_chat", "live-1", "您好，我是客服小王", "agent")
        assert socket.receive_json() == {
            "type": "message",
            "role": "agent",
            "text": "您好，我是客服小王",
        }
    assert service.sockets == {}  # detached on disconnect
    with client.websocket_connect("/v1/channels/web_chat/ws?session_id=live-1") as socket:
        history = socket.receive_json()["history"]
    assert [h["role"] for h in history] == ["customer", "bot", "agent"]


def test_push_without_an_active_sender_says_so(setup) -> None:
    import asyncio

    from crm.channels.senders import DeliveryFailed

    _, service, _ = setup
    with pytest.raises(DeliveryFailed, match="no active sender for wecom"):
        asyncio.run(service.push("wecom", "zhangsan", "hi"))
    assert asyncio.run(service.push("web_chat", "nobody-online", "hi")) is False
    assert service.history("nobody-online")[0]["text"] == "hi"  # kept for the reconnect


def test_dialogue_manager_glue_converts_turns_replies_and_agent_messages(setup) -> None:
    from crm.conversation.handler import message_handler
    from crm.conversation.manager import Outbound
    from crm.conversation.manager import Reply as DialogueReply

    client, service, dialogue = setup

    class Manager:  # the DialogueManager's interface: handle(Turn) -> Reply, deliver callback
        def __init__(self):
            self.turns = []

        def handle(self, turn):
            self.turns.append(turn)
            if turn.text == "转人工":
                return DialogueReply(None, "with_agent", "C-1", "open", ticket_id="T-1")
            return DialogueReply("您的余额是…", "task", "C-1", "bot", intent="balance")

    manager = Manager()
    dialogue.instead = message_handler(manager)

    def deliver(outbound: Outbound) -> None:  # what the gateway does with a desk's outbound
        service.push_soon(outbound.channel, outbound.sender_id, outbound.text, outbound.role)

    with client.websocket_connect(
        "/v1/channels/web_chat/ws?session_id=glue&customer_id=C-1"
    ) as socket:
        socket.receive_json()
        socket.send_text(json.dumps({"text": "查余额", "customer_id": "C-1"}))
        answer = socket.receive_json()
        assert (answer["reply"], answer["intent"], answer["handoff"]) == (
            "您的余额是…",
            {"label": "balance"},
            False,
        )
        socket.send_text(json.dumps({"text": "转人工"}))
        silent = socket.receive_json()
        assert silent["reply"] == "" and silent["handoff"] is True  # the agent owns it now
        deliver(Outbound("web_chat", "glue", "C-1", "我是客服小李", "agent"))
        assert socket.receive_json()["text"] == "我是客服小李"
    turn = manager.turns[0]
    assert (turn.channel, turn.sender_id, turn.customer_id, turn.text) == (
        "web_chat",
        "glue",
        "C-1",
        "查余额",
    )


def test_build_channel_service_enables_the_channels_whose_secrets_are_set(
    tmp_path, monkeypatch
) -> None:
    from crm.channels.service import build_channel_service
    from settings.channels import ChannelSettings

    for name in (
        "SCRM_WECOM_TOKEN",
        "SCRM_WECOM_AES_KEY",
        "SCRM_WECOM_CORP_ID",
        "SCRM_WECOM_SECRET",
        "SCRM_DINGTALK_APP_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)
    bare = build_channel_service(ChannelSettings(), tmp_path, None)
    assert bare.router.supported == ["web_chat"] and sorted(bare.unconfigured) == [
        "dingtalk",
        "wecom",
    ]
    with pytest.raises(Exception, match="set SCRM_WECOM_TOKEN, SCRM_WECOM_AES_KEY"):
        bare.adapter("wecom")
    bare.close()
    monkeypatch.setenv("SCRM_WECOM_TOKEN", TOKEN)
    monkeypatch.setenv("SCRM_WECOM_AES_KEY", AES_KEY)
    monkeypatch.setenv("SCRM_WECOM_CORP_ID", CORP)
    monkeypatch.setenv("SCRM_WECOM_SECRET", "app-secret")
    monkeypatch.setenv("SCRM_DINGTALK_APP_SECRET", SECRET)
    full = build_channel_service(ChannelSettings(), tmp_path, None)
    assert full.router.supported == ["dingtalk", "web_chat", "wecom"] and not full.unconfigured
    assert sorted(full.outbound) == ["dingtalk", "wecom"]
    assert (tmp_path / "data/events/intake.db").is_file()
    full.close()
