"""WeCom and DingTalk over their vendor protocols: signatures, encryption, retries, replies
through their send APIs."""

from __future__ import annotations

import base64
import json
import secrets
import time
import xml.etree.ElementTree as ET

import pytest

from crm.channels.dingtalk import DingTalkAdapter, sign
from crm.channels.wecom import WeComCrypto, encrypted_request_xml, signature
from tests.unit.conftest import AES_KEY, CORP, SECRET, TOKEN


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
    now = str(int(time.time()))
    query = {
        "timestamp": now,
        "nonce": "abc",
        "echostr": echostr,
        "msg_signature": signature(TOKEN, now, "abc", echostr),
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


def test_wecom_unhandled_message_type_is_422(setup) -> None:
    """Image, voice, file, location, link and menu clicks are handled (issue 28,
    tests/integration/test_wecom_depth.py); other types, or an image without its MediaId, are
    refused before anything is stored."""
    client, service, _ = setup
    crypto = WeComCrypto(TOKEN, AES_KEY, CORP)
    for kind, detail in (("miniprogram", "miniprogram"), ("image", "MediaId")):
        plain = wecom_text("a", "x", "1").replace("[text]", f"[{kind}]")
        answer = post_wecom(client, crypto, plain)
        assert answer.status_code == 422 and detail in answer.json()["detail"]
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
    # the configured robot's tenant: the body's chatbotCorpId ("dingcorp") is not signed
    assert (seen.tenant, seen.sender_id, seen.message_id) == ("default", "staff-7", "d-1")


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
