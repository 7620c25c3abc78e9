"""Scripted conversations over WeCom, DingTalk and MQTT through the running gateway.

Each channel is driven as its vendor drives it: WeCom requests are AES-encrypted and
SHA1-signed with the adapter's own crypto (the passive reply is decrypted and its signature
checked), DingTalk requests carry HMAC-SHA256 `timestamp` + `sign`, kiosks publish on
`scrm/in/<client>` to the session's mosquitto and read `scrm/out/<client>`. Every channel
reaches a knowledge-base answer, a task flow to done and a handoff whose agent reply reaches
the customer on that channel: WeCom's app-message API and DingTalk's sessionWebhook are one
local HTTPS sink (tests/channel_setup.py configures the gateway for it before it starts).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

import aiomqtt
import httpx
import pytest

from crm.channels.dingtalk import sign
from crm.channels.wecom import (
    WeComCrypto,
    cdata,
    encrypted_request_xml,
    field,
    parse_xml,
    signature,
)
from privacy.masking import luhn_valid
from tests.channel_setup import (
    DINGTALK_SECRET,
    WECOM_AES_KEY,
    WECOM_AGENT_ID,
    WECOM_CORP_ID,
    WECOM_SECRET,
    WECOM_TOKEN,
    channel_port,
    tls_files,
)
from tests.support import open_web_chat

CRYPTO = WeComCrypto(WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORP_ID)
ACCESS_TOKEN = f"tok-{uuid.uuid4().hex[:8]}"
DING_CORP = "dingtestcorp"
FAQ_QUESTION = "明天上海会下雨吗"
QUEUED = re.compile(r"第 \d+ 位")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wecom_msg_id() -> str:
    """A WeCom MsgId (a 64-bit integer) that is not Luhn-valid: the suite's log grep rightly
    flags 13-19 digit Luhn-valid numbers as bank cards wherever they are logged."""
    while luhn_valid(candidate := str(random.randrange(10**18, 2**63))):
        pass
    return candidate


# ---- the vendors' side: WeCom's app API and DingTalk's sessionWebhook ---------------------
class VendorSink:
    """What WeCom's /cgi-bin API and DingTalk's webhook received from the gateway."""

    def __init__(self, port: int, cert: Path, key: Path):
        self.calls: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                url = urlparse(self.path)
                query = dict(parse_qsl(url.query))
                ok = url.path == "/cgi-bin/gettoken" and query == {
                    "corpid": WECOM_CORP_ID,
                    "corpsecret": WECOM_SECRET,
                }
                sink.record(url.path, query, None)
                if ok:
                    self.answer({"errcode": 0, "access_token": ACCESS_TOKEN, "expires_in": 7200})
                else:
                    self.answer({"errcode": 40001, "errmsg": "invalid credential"})

            def do_POST(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                query = dict(parse_qsl(url.query))
                sink.record(url.path, query, body)
                if (
                    url.path.startswith(("/cgi-bin/message/send", "/cgi-bin/externalcontact/"))
                    and query.get("access_token") != ACCESS_TOKEN
                ):
                    self.answer({"errcode": 40014, "errmsg": "invalid access_token"})
                elif url.path == "/cgi-bin/externalcontact/add_corp_tag":  # tag ids (issue 21)
                    tags = [{"id": f"et-{t['name']}", "name": t["name"]} for t in body["tag"]]
                    self.answer({"errcode": 0, "tag_group": {"group_id": "g1", "tag": tags}})
                else:
                    self.answer({"errcode": 0, "errmsg": "ok"})

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def record(self, path: str, query: dict, body: Any) -> None:
        with self.changed:
            self.calls.append({"path": path, "query": query, "body": body})
            self.changed.notify_all()

    def wait(self, matches: Callable[[dict], bool], timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = [call for call in self.calls if matches(call)]
                if found:
                    return found[-1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the vendor never received it; calls: {self.calls}")
                self.changed.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def vendor(server: str, pipeline_workspace: Path) -> Iterator[VendorSink]:
    cert, key = tls_files(pipeline_workspace / "run" / "test-channels")
    sink = VendorSink(channel_port("vendor"), cert, key)
    try:
        yield sink
    finally:
        sink.close()


# ---- helpers: the desk, and each channel as its vendor speaks it ---------------------------
def link(client: httpx.Client, channel: str, sender: str, customer: str, **extra: str) -> None:
    linked = client.put(
        f"/v1/channels/{channel}/identities/{sender}", json={"customer_id": customer, **extra}
    )
    assert linked.status_code == 200, linked.text


def ticket_of(client: httpx.Client, customer: str) -> dict:
    queue = client.get("/v1/agent/queue")
    assert queue.status_code == 200, queue.text
    mine = [t for t in queue.json() if t["session_key"] == f"customer:{customer}"]
    assert len(mine) == 1, queue.json()
    return mine[0]


def take_ticket(client: httpx.Client, customer: str) -> tuple[str, str]:
    """The customer's ticket accepted: by the agent the desk assigned it to (skill, least
    load: agents of earlier tests are still on duty), else by a new agent."""
    agent = unique("agent")
    registered = client.put(f"/v1/agent/agents/{agent}", json={"skills": ["general", "cards"]})
    assert registered.status_code == 200, registered.text
    found = ticket_of(client, customer)
    ticket, agent = found["id"], found["agent_id"] or agent
    accepted = client.post(f"/v1/agent/tickets/{ticket}/accept", json={"agent_id": agent})
    assert accepted.status_code == 200 and accepted.json()["state"] == "open", accepted.text
    return agent, ticket


def agent_says(client: httpx.Client, ticket: str, agent: str, text: str) -> None:
    sent = client.post(f"/v1/agent/tickets/{ticket}/reply", json={"agent_id": agent, "text": text})
    assert sent.status_code == 200, sent.text


def close(client: httpx.Client, ticket: str, agent: str) -> None:
    closed = client.post(f"/v1/agent/tickets/{ticket}/close", json={"agent_id": agent})
    assert closed.status_code == 200 and closed.json()["state"] == "resolved", closed.text


def web_chat_faq_answer(client: httpx.Client) -> str:
    """The knowledge base's answer to FAQ_QUESTION, as web chat shows it."""
    chat = open_web_chat(client, {})
    answer = client.post(
        "/v1/channels/web_chat/messages", json={"text": FAQ_QUESTION}, headers=chat["headers"]
    ).json()
    assert answer["dialogue"]["kind"] == "answer" and answer["reply"], answer
    return answer["reply"]


def wecom_request(user: str, text: str, msg_id: str) -> tuple[bytes, dict[str, str]]:
    plain = (
        f"<xml><ToUserName>{cdata(WECOM_CORP_ID)}</ToUserName>"
        f"<FromUserName>{cdata(user)}</FromUserName><CreateTime>{int(time.time())}</CreateTime>"
        f"<MsgType>{cdata('text')}</MsgType><Content>{cdata(text)}</Content>"
        f"<MsgId>{msg_id}</MsgId><AgentID>{WECOM_AGENT_ID}</AgentID></xml>"
    )
    return encrypted_request_xml(CRYPTO, plain, WECOM_AGENT_ID)


def wecom_post(client: httpx.Client, body: bytes, query: dict[str, str]) -> httpx.Response:
    return client.post(
        "/v1/channels/wecom/messages",
        params=query,
        content=body,
        headers={"Content-Type": "text/xml"},
    )


def wecom_reply(response: httpx.Response, user: str, nonce: str) -> str:
    """Check the passive reply's signature, decrypt it: the text WeCom shows the user."""
    assert response.status_code == 200, response.text
    if not response.content:
        return ""  # WeCom's "nothing to say"
    envelope = parse_xml(response.content)
    assert field(envelope, "Nonce") == nonce
    plain = CRYPTO.decrypt_message(
        field(envelope, "MsgSignature") or "",
        field(envelope, "TimeStamp") or "",
        field(envelope, "Nonce") or "",
        response.content,
    )
    message = parse_xml(plain)
    assert field(message, "ToUserName") == user and field(message, "MsgType") == "text"
    assert field(message, "FromUserName") == WECOM_CORP_ID
    return field(message, "Content") or ""


def wecom_say(client: httpx.Client, user: str, text: str) -> str:
    body, query = wecom_request(user, text, wecom_msg_id())
    return wecom_reply(wecom_post(client, body, query), user, query["nonce"])


def ding_body(staff: str, text: str, msg_id: str | None = None) -> dict[str, Any]:
    return {
        "msgtype": "text",
        "text": {"content": text},
        "msgId": msg_id or unique("msg"),
        "conversationId": f"cid-{staff}",
        "conversationType": "1",
        "senderId": f"$:LWCP_v1:${staff}",
        "senderStaffId": staff,
        "senderNick": "测试用户",
        "chatbotCorpId": DING_CORP,
        "sessionWebhook": f"https://127.0.0.1:{channel_port('vendor')}/robot/send?session={staff}",
        "sessionWebhookExpiredTime": int(time.time() * 1000) + 3_600_000,
    }


def ding_post(
    client: httpx.Client, body: dict, timestamp_ms: int | None = None, secret: str = DINGTALK_SECRET
) -> httpx.Response:
    timestamp = str(timestamp_ms or int(time.time() * 1000))
    return client.post(
        "/v1/channels/dingtalk/messages",
        content=json.dumps(body, ensure_ascii=False).encode(),
        headers={"timestamp": timestamp, "sign": sign(timestamp, secret)},
    )


def ding_say(client: httpx.Client, staff: str, text: str) -> str:
    response = ding_post(client, ding_body(staff, text))
    assert response.status_code == 200, response.text
    robot = response.json()
    return robot["text"]["content"] if robot else ""


# ---- WeCom ---------------------------------------------------------------------------------
def test_wecom_url_verification_answers_the_decrypted_echostr(client: httpx.Client) -> None:
    echostr = CRYPTO.encrypt("echo-4815162342")
    query = {"timestamp": str(int(time.time())), "nonce": "n0nce", "echostr": echostr}
    good = signature(WECOM_TOKEN, query["timestamp"], query["nonce"], echostr)
    verified = client.get("/v1/channels/wecom/messages", params={**query, "msg_signature": good})
    assert verified.status_code == 200 and verified.text == "echo-4815162342"
    forged = client.get("/v1/channels/wecom/messages", params={**query, "msg_signature": "0" * 40})
    assert forged.status_code == 401


def test_wecom_bad_signature_is_refused_and_nothing_is_stored(client: httpx.Client) -> None:
    user, msg_id = unique("wx"), wecom_msg_id()
    body, query = wecom_request(user, FAQ_QUESTION, msg_id)
    forged = wecom_post(client, body, {**query, "msg_signature": "0" * 40})
    assert forged.status_code == 401 and "msg_signature" in forged.json()["detail"]
    # Had the forged request been logged, this message id would be a duplicate (no reply).
    answer = wecom_reply(wecom_post(client, body, query), user, query["nonce"])
    assert answer == web_chat_faq_answer(client)


def test_wecom_conversation_answer_task_flow_and_handoff(
    client: httpx.Client, vendor: VendorSink
) -> None:
    user, customer = unique("wx"), unique("C")
    link(client, "wecom", user, customer)
    assert wecom_say(client, user, FAQ_QUESTION) == web_chat_faq_answer(client)

    assert "card" in wecom_say(client, user, "I lost my card").lower()
    assert "2233" in wecom_say(client, user, "6222 0202 0011 2233")
    assert "reference" in wecom_say(client, user, "yes")

    assert QUEUED.search(wecom_say(client, user, "转人工"))
    agent, ticket = take_ticket(client, customer)
    assert wecom_say(client, user, "我的卡被冻结了") == ""  # the agent owns it: no bot answer
    text = f"您好，我是客服小王（{uuid.uuid4().hex[:4]}），马上为您处理。"
    agent_says(client, ticket, agent, text)
    sent = vendor.wait(
        lambda c: c["path"] == "/cgi-bin/message/send" and c["body"]["text"]["content"] == text
    )
    assert sent["body"]["touser"] == user and sent["body"]["agentid"] == int(WECOM_AGENT_ID)
    assert sent["query"]["access_token"] == ACCESS_TOKEN  # from /cgi-bin/gettoken
    close(client, ticket, agent)
    assert wecom_say(client, user, FAQ_QUESTION) == web_chat_faq_answer(client)  # bot again


# ---- DingTalk ------------------------------------------------------------------------------
def test_dingtalk_refuses_stale_or_forged_signatures_and_stores_nothing(
    client: httpx.Client,
) -> None:
    body = ding_body(unique("staff"), FAQ_QUESTION)
    stale = ding_post(client, body, timestamp_ms=int((time.time() - 2 * 3600) * 1000))
    assert stale.status_code == 401 and "away from now" in stale.json()["detail"]
    forged = ding_post(client, body, secret="not-the-secret")
    assert forged.status_code == 401 and "sign" in forged.json()["detail"]
    # Neither was logged: the same msgId, signed now, is a new message with an answer.
    answer = ding_post(client, body)
    assert answer.status_code == 200
    assert answer.json()["text"]["content"] == web_chat_faq_answer(client)


def test_dingtalk_conversation_answer_task_flow_and_handoff(
    client: httpx.Client, vendor: VendorSink
) -> None:
    staff, customer = unique("staff"), unique("C")
    link(client, "dingtalk", staff, customer)  # the configured robot's tenant
    assert ding_say(client, staff, FAQ_QUESTION) == web_chat_faq_answer(client)

    assert "card" in ding_say(client, staff, "I lost my card").lower()
    assert "2233" in ding_say(client, staff, "6222 0202 0011 2233")
    assert "reference" in ding_say(client, staff, "yes")

    assert QUEUED.search(ding_say(client, staff, "转人工"))
    agent, ticket = take_ticket(client, customer)
    assert ding_say(client, staff, "我的卡被冻结了") == ""
    text = f"您好，钉钉客服（{uuid.uuid4().hex[:4]}）为您服务。"
    agent_says(client, ticket, agent, text)
    sent = vendor.wait(
        lambda c: c["path"] == "/robot/send" and c["body"]["text"]["content"] == text
    )
    assert sent["query"] == {"session": staff}  # the sessionWebhook of the staff's callback
    close(client, ticket, agent)


# ---- MQTT ----------------------------------------------------------------------------------
class Kiosk:
    """A branch kiosk on the broker: publishes on scrm/in/<name>, reads scrm/out/<name>."""

    def __init__(self, mqtt: aiomqtt.Client, name: str, customer: str):
        self.mqtt, self.name, self.customer = mqtt, name, customer
        self.inbox: list[dict] = []

    async def expect(self, matches: Callable[[dict], bool], timeout: float = 15.0) -> dict:
        for message in self.inbox:
            if matches(message):
                self.inbox.remove(message)
                return message
        async with asyncio.timeout(timeout):
            async for incoming in self.mqtt.messages:
                if str(incoming.topic) != f"scrm/out/{self.name}":
                    continue  # a late retained gateway status
                message = json.loads(bytes(incoming.payload))
                if matches(message):
                    return message
                self.inbox.append(message)
        raise AssertionError("unreachable")

    async def say(self, text: str) -> dict:
        body = {"text": text, "message_id": unique("k"), "customer_id": self.customer}
        await self.mqtt.publish(f"scrm/in/{self.name}", json.dumps(body), qos=1)
        return await self.expect(lambda m: m.get("message_id") == body["message_id"])


async def gateway_listening(mqtt: aiomqtt.Client, timeout: float = 30.0) -> None:
    """Wait for a gateway bridge's retained "online" status (it reconnects every 0.5 s)."""
    await mqtt.subscribe("scrm/status/gateway/#", qos=1)
    async with asyncio.timeout(timeout):
        async for incoming in mqtt.messages:
            if bytes(incoming.payload) == b"online":
                break
    await mqtt.unsubscribe("scrm/status/gateway/#")


def test_mqtt_conversation_answer_task_flow_and_handoff(
    mqtt_broker: int, client: httpx.Client
) -> None:
    name, customer = unique("kiosk"), unique("C")
    faq_answer = web_chat_faq_answer(client)

    async def scenario() -> None:
        async with aiomqtt.Client("127.0.0.1", mqtt_broker, identifier=name) as mqtt:
            await gateway_listening(mqtt)
            await mqtt.subscribe(f"scrm/out/{name}", qos=1)
            kiosk = Kiosk(mqtt, name, customer)
            answer = await kiosk.say(FAQ_QUESTION)
            assert answer["reply"] == faq_answer and answer["customer_id"] == customer

            assert "card" in (await kiosk.say("I lost my card"))["reply"].lower()
            assert "2233" in (await kiosk.say("6222 0202 0011 2233"))["reply"]
            assert "reference" in (await kiosk.say("yes"))["reply"]

            queued = await kiosk.say("转人工")
            assert queued["handoff"] and QUEUED.search(queued["reply"])
            agent, ticket = await asyncio.to_thread(take_ticket, client, customer)
            silent = await kiosk.say("我的卡被冻结了")
            assert silent["reply"] == "" and silent["handoff"]
            text = f"您好，网点客服（{uuid.uuid4().hex[:4]}）马上到。"
            await asyncio.to_thread(agent_says, client, ticket, agent, text)
            pushed = await kiosk.expect(lambda m: m.get("reply") == text)
            assert pushed["role"] == "agent"
            await asyncio.to_thread(close, client, ticket, agent)

    asyncio.run(scenario())


# ---- one customer, two channels ------------------------------------------------------------
def test_a_task_started_on_wecom_continues_on_web_chat(client: httpx.Client) -> None:
    user, customer = unique("wx"), unique("C")
    link(client, "wecom", user, customer)
    assert "card" in wecom_say(client, user, "I lost my card").lower()  # the flow asks
    # the CRM logs the customer in on the site: a session opened for them (staff vouch)
    opened = client.post("/v1/channels/web_chat/sessions", json={"customer_id": customer})
    assert opened.status_code == 200, opened.text
    chat = {"X-Chat-Session": opened.json()["session_token"]}

    def web(text: str) -> dict:
        answer = client.post("/v1/channels/web_chat/messages", json={"text": text}, headers=chat)
        assert answer.status_code == 200, answer.text
        return answer.json()

    confirm = web("6222 0202 0011 2233")  # the slot WeCom asked for, answered on web chat
    assert confirm["dialogue"]["flow"] == "report_lost_card" and "2233" in confirm["reply"]
    done = web("yes")
    assert done["dialogue"]["flow_status"] == "done" and "reference" in done["reply"]

    queued = web("转人工")  # the agent sees one history, both channels in it
    assert queued["handoff"]
    ticket = ticket_of(client, customer)
    said = [(turn["channel"], turn["text"]) for turn in ticket["transcript"]]
    assert said[0] == ("wecom", "I lost my card")
    assert ("web_chat", "6222 0202 0011 2233") in said and ("web_chat", "转人工") in said
    agent, ticket_id = take_ticket(client, customer)
    close(client, ticket_id, agent)
