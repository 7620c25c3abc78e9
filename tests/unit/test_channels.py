"""Channel routes end to end over FastAPI: WeCom, DingTalk, web chat (HTTP + WebSocket).

A stub dialogue handler stands in for the gateway's; it records what it saw, so the tests can
tell a handled message from one answered out of the intake log.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import xml.etree.ElementTree as ET

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from crm.channels.dingtalk import DingTalkAdapter, sign
from crm.channels.identity import IdentityMap
from crm.channels.routes import channel_router
from crm.channels.service import ChannelService
from crm.channels.webchat import ChatTranscript, WebChatAdapter
from crm.channels.wecom import WeComAdapter, WeComCrypto, encrypted_request_xml, signature
from crm.intake import SqliteIntake
from crm.messages import InboundMessage, Reply

CORP = "wwtestcorp0001"
TOKEN = "test-token-123"
AES_KEY = base64.b64encode(bytes(range(32))).decode().rstrip("=")  # 43 characters
SECRET = "dingtalk-app-secret"


class Dialogue:
    """Echoes the text back, with the customer id it was given; counts calls."""

    def __init__(self):
        self.seen: list[InboundMessage] = []
        self.instead = None  # another handler to answer with (a test swaps the dialogue)

    async def __call__(self, message: InboundMessage) -> Reply:
        if self.instead is not None:
            return await self.instead(message)
        self.seen.append(message)
        return Reply(
            text=f"收到：{message.text}", intent="echo", data={"customer_id": message.customer_id}
        )


@pytest.fixture
def setup(tmp_path):
    adapters = [WebChatAdapter(), WeComAdapter(TOKEN, AES_KEY, CORP), DingTalkAdapter(SECRET)]
    intake = SqliteIntake(tmp_path / "intake.db")
    service = ChannelService(
        adapters,
        IdentityMap(tmp_path / "channels.db"),
        intake,
        ChatTranscript(tmp_path / "channels.db"),
        unconfigured={"mqtt_http": ["X"]},
    )
    app = FastAPI()
    dialogue = Dialogue()
    app.include_router(channel_router(service, dialogue))
    with TestClient(app) as client:
        yield client, service, dialogue
    service.close()


def wecom_text(sender: str, text: str, msg_id: str) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[{sender}]]>"
        f"</FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]>"
        f"</MsgType><Content><![CDATA[{text}]]></Content><MsgId>{msg_id}</MsgId>"
        f"<AgentID>1000002</AgentID></xml>"
    )


def post_wecom(client, crypto, plain):
    body, query = encrypted_request_xml(crypto, plain)
    return client.post("/v1/channels/wecom/messages", params=query, content=body)


# --- WeCom -----------------------------------------------------------------------------------


def test_wecom_known_answer_from_tencents_published_sample() -> None:
    """Token, key, corp id and payloads of WeCom's WXBizMsgCrypt Sample.py (callback/)."""
    crypto = WeComCrypto(
        "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo",
        "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt",
        "ww1436e0e65a779aee",
    )
    echo = (
        "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA=="
    )
    assert (
        crypto.verify_url(
            "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb", "1476416373", "47744683", echo
        )
        == "1288432023552776189"
    )
    encrypted = (
        "Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkA"
        "gGzBhzTtRLNshw2AEew+kkYcD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJPQ"
        "bZ9U+3JWcoD4Z5jaU0y9GSh010wsHF8KZD24YhmZH4ch4Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7Mhm"
        "EbU2qARR4iQHE7wy24qy0cRX3Mfp6iELcDNfSsPGjUQVDGxQDCWjayJOpcwocugux082f49HKYg84EpHSGXAyh+"
        "/oxwaWbvL6aSDPOYuPDGOCI8jmnKiypE+"
    )
    body = (
        f"<xml><ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName>\n<Encrypt><![CDATA["
        f"{encrypted}]]></Encrypt>\n<AgentID><![CDATA[1000002]]></AgentID>\n</xml>"
    ).encode()
    plain = crypto.decrypt_message(
        "0c3914025cb4b4d68103f6bfc8db550f79dcf48e", "1476422779", "1597212914", body
    )
    root = ET.fromstring(plain)
    assert root.findtext("FromUserName") == "ChenJiaShun"
    assert root.findtext("Content") == "你好" and root.findtext("MsgId") == "1456453720"


def test_wecom_encryption_round_trips_and_pads_to_32_bytes() -> None:
    crypto = WeComCrypto(TOKEN, AES_KEY, CORP)
    for text in ["", "a", "中文" * 7, "x" * 100]:
        encrypted = crypto.encrypt(text, random16=b"0123456789abcdef")
        assert len(base64.b64decode(encrypted)) % 32 == 0
        assert crypto.decrypt(encrypted) == text
    other = WeComCrypto(TOKEN, AES_KEY, "wwsomeoneelse")
    with pytest.raises(Exception, match="another receive id"):
        crypto.decrypt(other.encrypt("hi"))


def test_wecom_url_verification_answers_echostr_and_rejects_bad_signature(setup) -> None:
    client, _, _ = setup
    crypto = WeComCrypto(TOKEN, AES_KEY, CORP)
    echostr = crypto.encrypt("8127398172398")
    query = {
        "timestamp": "1700000000",
        "nonce": "abc",
        "echostr": echostr,
        "msg_signature": signature(TOKEN, "1700000000", "abc", echostr),
    }
    answer = client.get("/v1/channels/wecom/messages", params=query)
    assert answer.status_code == 200 and answer.text == "8127398172398"
    bad = client.get("/v1/channels/wecom/messages", params={**query, "msg_signature": "0" * 40})
    assert bad.status_code == 401 and "msg_signature" in bad.json()["detail"]


def test_wecom_message_is_answered_with_an_encrypted_signed_reply(setup) -> None:
    client, service, dialogue = setup
    crypto = WeComCrypto(TOKEN, AES_KEY, CORP)
    answer = post_wecom(client, crypto, wecom_text("zhangsan", "我的卡丢了", "900001"))
    assert answer.status_code == 200, answer.text
    envelope = ET.fromstring(answer.text)
    encrypted = envelope.findtext("Encrypt")
    assert envelope.findtext("MsgSignature") == signature(
        TOKEN, envelope.findtext("TimeStamp"), envelope.findtext("Nonce"), encrypted
    )
    reply = ET.fromstring(crypto.decrypt(encrypted))
    assert reply.findtext("ToUserName") == "zhangsan" and reply.findtext("FromUserName") == CORP
    assert reply.findtext("MsgType") == "text" and reply.findtext("Content") == "收到：我的卡丢了"
    (seen,) = dialogue.seen
    assert (seen.tenant, seen.channel, seen.sender_id) == (CORP, "wecom", "zhangsan")
    assert seen.customer_id and service.intake.status("wecom", "900001")["state"] == "done"


def test_wecom_bad_signature_is_401_and_stores_nothing(setup) -> None:
    client, service, dialogue = setup
    crypto = WeComCrypto(TOKEN, AES_KEY, CORP)
    body, query = encrypted_request_xml(crypto, wecom_text("lisi", "hi", "900002"))
    answer = client.post(
        "/v1/channels/wecom/messages", params={**query, "nonce": "forged"}, content=body
    )
    assert answer.status_code == 401
    # Right signature, but encrypted with another corp's key: also refused.
    stranger = WeComCrypto(TOKEN, base64.b64encode(secrets.token_bytes(32)).decode()[:43], CORP)
    assert post_wecom(client, stranger, wecom_text("lisi", "hi", "900003")).status_code == 401
    assert service.intake.counts() == {"pending": 0, "processing": 0, "done": 0, "dead": 0}
    assert dialogue.seen == [] and service.identity.lookup(CORP, "wecom", "lisi") is None


def test_wecom_vendor_retry_is_answered_from_the_log_not_handled_twice(setup) -> None:
    client, _, dialogue = setup
    crypto = WeComCrypto(TOKEN, AES_KEY, CORP)
    plain = wecom_text("wangwu", "查余额", "900004")
    first, retry = post_wecom(client, crypto, plain), post_wecom(client, crypto, plain)
    assert first.status_code == retry.status_code == 200
    texts = [
        ET.fromstring(crypto.decrypt(ET.fromstring(r.text).findtext("Encrypt"))).findtext("Content")
        for r in (first, retry)
    ]
    assert texts == ["收到：查余额", "收到：查余额"] and len(dialogue.seen) == 1


def test_wecom_non_text_message_is_422(setup) -> None:
    client, service, _ = setup
    crypto = WeComCrypto(TOKEN, AES_KEY, CORP)
    plain = wecom_text("a", "x", "1").replace("[text]", "[image]")
    answer = post_wecom(client, crypto, plain)
    assert answer.status_code == 422 and "image" in answer.json()["detail"]
    assert service.intake.counts()["done"] == 0


# --- DingTalk ---------------------------------------------------------------------------------


def dingtalk_body(msg_id: str, text: str = "查一下余额", group: bool = False) -> dict:
    return {
        "msgtype": "text",
        "text": {"content": f" {text} "},
        "msgId": msg_id,
        "conversationId": "cid-1",
        "conversationType": "2" if group else "1",
        "senderId": "$:LWCP_v1:$abc",
        "senderStaffId": "staff-7",
        "chatbotCorpId": "dingcorp",
        "senderNick": "张三",
    }


def dingtalk_headers(secret: str = SECRET, at: float | None = None) -> dict:
    timestamp = str(int((at or time.time()) * 1000))
    return {"timestamp": timestamp, "sign": sign(timestamp, secret)}


def test_dingtalk_signed_message_gets_a_robot_reply(setup) -> None:
    client, _, dialogue = setup
    answer = client.post(
        "/v1/channels/dingtalk/messages",
        json=dingtalk_body("d-1", group=True),
        headers=dingtalk_headers(),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "msgtype": "text",
        "text": {"content": "收到：查一下余额"},
        "at": {"atUserIds": ["staff-7"], "isAtAll": False},
    }
    (seen,) = dialogue.seen
    assert (seen.tenant, seen.sender_id, seen.message_id) == ("dingcorp", "staff-7", "d-1")


def test_dingtalk_known_sign_value() -> None:
    # base64(HMAC-SHA256(key="secret", msg="1700000000000\nsecret")), computed independently.
    import hashlib
    import hmac

    expected = base64.b64encode(
        hmac.new(b"secret", b"1700000000000\nsecret", hashlib.sha256).digest()
    ).decode()
    assert sign("1700000000000", "secret") == expected and len(expected) == 44


@pytest.mark.parametrize(
    "make_headers",
    [
        lambda: dingtalk_headers("wrong-secret"),
        lambda: dingtalk_headers(at=time.time() - 3700),  # stale: > 1 hour
        lambda: dingtalk_headers(at=time.time() + 3700),  # from the future
        dict,
        lambda: {"timestamp": "abc", "sign": "x"},
    ],
    ids=["wrong-secret", "stale", "future", "missing", "malformed"],
)
def test_dingtalk_bad_or_stale_sign_is_401_and_stores_nothing(setup, make_headers) -> None:
    """Headers are signed when the test runs, not at collection: a long session would
    otherwise bring the 'future' timestamp back inside the allowed skew."""
    client, service, dialogue = setup
    headers = make_headers()
    answer = client.post(
        "/v1/channels/dingtalk/messages", json=dingtalk_body("d-2"), headers=headers
    )
    assert answer.status_code == 401, answer.text
    assert service.intake.status("dingtalk", "d-2") is None and dialogue.seen == []


def test_dingtalk_skew_is_configurable() -> None:
    adapter = DingTalkAdapter(SECRET, max_skew_s=60)
    adapter.check(dingtalk_headers(at=time.time() - 30))
    with pytest.raises(Exception, match="away from now"):
        adapter.check(dingtalk_headers(at=time.time() - 120))


def test_dingtalk_malformed_body_is_422(setup) -> None:
    client, _, _ = setup
    body = dingtalk_body("d-3")
    del body["conversationId"]
    answer = client.post("/v1/channels/dingtalk/messages", json=body, headers=dingtalk_headers())
    assert answer.status_code == 422 and "conversationId" in answer.json()["detail"]


# --- Web chat, router, identity ---------------------------------------------------------------


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
        assert socket.receive_json() == {"type": "error", "detail": "frame: not valid JSON"}
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


def test_agent_replies_reach_wecom_and_dingtalk_through_their_send_apis(setup) -> None:
    """The reply route (AgentID, sessionWebhook) comes from the customer's last callback."""
    import asyncio

    import httpx

    from crm.channels.senders import DingTalkWebhookSender, WeComAppSender

    client, service, _ = setup
    calls: list[tuple[str, dict]] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        calls.append((str(request.url), json.loads(request.content or b"{}")))
        if request.url.path == "/cgi-bin/gettoken":
            return httpx.Response(200, json={"access_token": "tok-1", "expires_in": 7200})
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})

    transport = httpx.MockTransport(vendor)
    service.outbound["wecom"] = WeComAppSender(CORP, "app-secret", transport=transport)
    service.outbound["dingtalk"] = DingTalkWebhookSender(transport=transport)
    crypto = WeComCrypto(TOKEN, AES_KEY, CORP)
    post_wecom(client, crypto, wecom_text("zhaoliu", "转人工", "900020"))
    body = dingtalk_body("d-20", group=True)
    body["sessionWebhook"] = "https://oapi.dingtalk.com/robot/sendBySession?session=abc"
    body["sessionWebhookExpiredTime"] = int((time.time() + 3600) * 1000)
    client.post("/v1/channels/dingtalk/messages", json=body, headers=dingtalk_headers())

    async def agent_writes() -> None:
        await service.push("wecom", "zhaoliu", "您好，我是客服小王")
        await service.push("dingtalk", "staff-7", "已为您处理")

    asyncio.run(agent_writes())
    (token_url, _), (send_url, sent), (hook_url, hooked) = calls
    assert "corpid=" + CORP in token_url and "corpsecret=app-secret" in token_url
    assert send_url.endswith("/cgi-bin/message/send?access_token=tok-1")
    assert sent == {
        "touser": "zhaoliu",
        "msgtype": "text",
        "agentid": 1000002,
        "text": {"content": "您好，我是客服小王"},
    }
    assert hook_url == body["sessionWebhook"]
    assert hooked["text"] == {"content": "已为您处理"} and hooked["at"]["atUserIds"] == ["staff-7"]


def test_wecom_sender_caches_and_refreshes_its_token_and_reports_refusals() -> None:
    import asyncio

    import httpx

    from crm.channels.senders import DeliveryFailed, WeComAppSender

    tokens = iter(["old", "new"])
    sends: list[str] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/cgi-bin/gettoken":
            return httpx.Response(200, json={"access_token": next(tokens), "expires_in": 7200})
        token = request.url.params["access_token"]
        sends.append(token)
        text = json.loads(request.content)["text"]["content"]
        if text == "refused":
            return httpx.Response(200, json={"errcode": 81013, "errmsg": "user not found"})
        if token == "old" and len(sends) > 1:
            return httpx.Response(200, json={"errcode": 42001, "errmsg": "token expired"})
        return httpx.Response(200, json={"errcode": 0})

    sender = WeComAppSender(CORP, "s", agent_id="7", transport=httpx.MockTransport(vendor))

    async def scenario() -> None:
        await sender("u", "one", "agent", {})
        await sender("u", "two", "agent", {})  # "old" expired -> refreshed once -> "new"
        with pytest.raises(DeliveryFailed, match="81013"):
            await sender("u", "refused", "agent", {})
        with pytest.raises(DeliveryFailed, match="AgentID"):
            await WeComAppSender(CORP, "s", transport=httpx.MockTransport(vendor))(
                "u", "x", "agent", {}
            )

    asyncio.run(scenario())
    assert sends == ["old", "old", "new", "new"]


def test_dingtalk_sender_refuses_foreign_hosts_and_expired_webhooks() -> None:
    import asyncio

    from crm.channels.senders import DeliveryFailed, DingTalkWebhookSender

    sender = DingTalkWebhookSender()
    future = str(int(time.time() + 60))
    cases = {
        "host evil.example not allowed": {
            "session_webhook": "https://evil.example/x",
            "session_webhook_expires_s": future,
        },
        "expired": {
            "session_webhook": "https://oapi.dingtalk.com/x",
            "session_webhook_expires_s": "1000",
        },
        "no DingTalk sessionWebhook": {},
    }
    for reason, context in cases.items():
        with pytest.raises(DeliveryFailed, match=reason):
            asyncio.run(sender("staff", "hi", "agent", context))


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
    with client.websocket_connect("/v1/channels/web_chat/ws?session_id=glue") as socket:
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
