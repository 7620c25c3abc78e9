"""The soak's requests: chat turns as each vendor sends them, model calls, reads, desk actions.

Each customer (S-0, S-1...) talks on one channel (web chat, DingTalk, WeCom in turn), linked to
their CRM id first so every turn has a customer and so its turn event. A chat turn keeps its
message id across retries: the intake log answers a retry of a logged message from the log, so
a turn the client could not confirm (a 503, a dead connection) is retried until accepted, never
counted twice. `sent` is what the reconciliation checks: (channel, intake id) -> customer, and
whether the client saw it accepted.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from crm.channels.dingtalk import sign
from crm.channels.webchat import scoped_message_id
from crm.channels.wecom import WeComCrypto, cdata, encrypted_request_xml
from privacy.ids import opaque_id
from privacy.masking import luhn_valid

CHANNELS = ("web_chat", "dingtalk", "wecom")
TEXTS = ("查余额", "how long until my transfer lands?", "明天上海会下雨吗", "我的卡丢了", "hello")
# kind -> share of the requests (chat turns are half)
MIX = {"chat": 0.5, "model": 0.2, "customer_read": 0.2, "agent": 0.1}


@dataclass
class Customer:
    id: str
    channel: str
    sender: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def of(cls, n: int) -> Customer:
        return cls(f"S-{n}", CHANNELS[n % len(CHANNELS)])


def wecom_msg_id(rng: random.Random) -> str:
    """A WeCom MsgId (a 64-bit integer) that the log grep cannot take for a card number."""
    while luhn_valid(candidate := str(rng.randrange(10**18, 2**63))):
        pass
    return candidate


class Traffic:
    def __init__(self, http: httpx.AsyncClient, keys: dict[str, str], secrets: dict[str, str],
                 retry_s: float) -> None:  # fmt: skip
        self.http, self.retry_s = http, retry_s
        self.staff = {"X-API-Key": keys["supervisor"]}
        self.admin = {"X-API-Key": keys["admin"]}
        self.ding_secret = secrets["SCRM_DINGTALK_APP_SECRET"]
        self.wecom = WeComCrypto(secrets["SCRM_WECOM_TOKEN"], secrets["SCRM_WECOM_AES_KEY"],
                                 secrets["SCRM_WECOM_CORP_ID"])  # fmt: skip
        self.customers: list[Customer] = []
        self.sent: dict[tuple[str, str], dict[str, Any]] = {}

    async def setup(self, customers: list[Customer]) -> None:
        """Open the web chat sessions, link every sender to its customer."""
        for customer in customers:
            if customer.channel == "web_chat":
                opened = await self.http.post(
                    "/v1/channels/web_chat/sessions", json={}, headers=self.staff
                )
                opened.raise_for_status()
                body = opened.json()
                customer.sender = body["session_id"]
                customer.headers = {**self.staff, "X-Chat-Session": body["session_token"]}
            else:
                customer.sender = opaque_id(12)
            linked = await self.http.put(
                f"/v1/channels/{customer.channel}/identities/{customer.sender}",
                json={"customer_id": customer.id}, headers=self.admin,
            )  # fmt: skip
            if linked.status_code != 200:
                raise RuntimeError(f"link {customer.channel}: {linked.status_code} {linked.text}")
        self.customers = customers

    async def one(self, rng: random.Random, samples: Any) -> None:
        kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
        customer = rng.choice(self.customers)
        if kind == "chat":
            await self.chat(customer, rng.choice(TEXTS), rng, samples)
            return
        started = time.perf_counter()
        try:
            status = (await self.request(kind, customer, rng)).status_code
        except httpx.HTTPError:
            status = 0
        samples.add(kind, status, (time.perf_counter() - started) * 1000)

    def request(self, kind: str, customer: Customer, rng: random.Random):
        if kind == "model":
            route = rng.choice(("intent", "sentiment", "churn"))
            body = {"customer_id": customer.id} if route == "churn" else {"text": rng.choice(TEXTS)}
            return self.http.post(f"/v1/{route}", json=body, headers=self.staff)
        if kind == "customer_read":
            what = rng.choice(("features", "profile", "tags"))
            return self.http.get(f"/v1/customers/{customer.id}/{what}", headers=self.staff)
        if rng.random() < 0.5:
            return self.http.get("/v1/agent/queue", headers=self.staff)
        return self.http.put(f"/v1/agent/agents/soak-{rng.randrange(5)}",
                             json={"skills": ["general"]}, headers=self.staff)  # fmt: skip

    async def chat(self, customer: Customer, text: str, rng: random.Random, samples: Any) -> None:
        """One turn, in order with the customer's others, retried with the same id."""
        async with customer.lock:
            mid = wecom_msg_id(rng) if customer.channel == "wecom" else opaque_id(16, rng)
            key = (customer.channel, mid)
            if customer.channel == "web_chat":
                key = ("web_chat", scoped_message_id(customer.sender, mid))
            self.sent[key] = {"customer": customer.id, "accepted": False}
            deadline = time.monotonic() + self.retry_s
            while True:
                started = time.perf_counter()
                try:
                    answer = await self.send(customer, text, mid)
                    status, wait = answer.status_code, float(answer.headers.get("Retry-After", 0))
                except httpx.HTTPError:
                    status, wait = 0, 0.2
                samples.add(
                    f"chat:{customer.channel}", status, (time.perf_counter() - started) * 1000
                )
                if 200 <= status < 300:
                    self.sent[key]["accepted"] = True
                    return
                if (status not in (0, 429, 503)) or time.monotonic() > deadline:
                    return
                await asyncio.sleep(min(max(wait, 0.2), 2.0))

    def send(self, customer: Customer, text: str, mid: str):
        if customer.channel == "web_chat":
            return self.http.post("/v1/channels/web_chat/messages", headers=customer.headers,
                                  json={"text": text, "message_id": mid})  # fmt: skip
        if customer.channel == "dingtalk":
            body = {"msgtype": "text", "text": {"content": text}, "msgId": mid,
                    "conversationId": f"cid-{customer.sender}", "conversationType": "1",
                    "senderId": f"$:LWCP_v1:${customer.sender}",
                    "senderStaffId": customer.sender, "chatbotCorpId": "soakcorp"}  # fmt: skip
            stamp = str(int(time.time() * 1000))
            signed = {"timestamp": stamp, "sign": sign(stamp, self.ding_secret)}
            raw = json.dumps(body, ensure_ascii=False).encode()
            return self.http.post("/v1/channels/dingtalk/messages", headers=signed, content=raw)
        plain = (
            f"<xml><ToUserName>{cdata(self.wecom.receive_id)}</ToUserName>"
            f"<FromUserName>{cdata(customer.sender)}</FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType>{cdata('text')}</MsgType>"
            f"<Content>{cdata(text)}</Content><MsgId>{mid}</MsgId><AgentID>1</AgentID></xml>"
        )
        body, query = encrypted_request_xml(self.wecom, plain, "1")
        return self.http.post("/v1/channels/wecom/messages", params=query, content=body,
                              headers={"Content-Type": "text/xml"})  # fmt: skip
