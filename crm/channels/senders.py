"""Active senders: messages to a customer that are not the answer to their request.

A human agent's reply, a queue notice or a reply the intake worker produced later cannot ride
on the vendor's HTTP response; each channel has its own way to push:
- WeCom: the app message API (`/cgi-bin/message/send` with an access token from
  `/cgi-bin/gettoken`, cached until it expires; refreshed once when WeCom says it expired);
- DingTalk: the conversation's `sessionWebhook` from the sender's latest (signed) callback;
  only DingTalk hosts are accepted, so a forged URL cannot make the gateway call elsewhere;
- web chat and MQTT push inside `ChannelService.push` and `MqttBridge.send`.
`ChannelService` remembers each sender's reply route (AgentID, webhook) from their last message.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlparse

import httpx

TOKEN_EXPIRED = {40014, 42001}  # invalid / expired access_token


class DeliveryFailed(RuntimeError):
    """The vendor refused or could not be reached; the message stays in the transcript/log."""


class WeComAppSender:
    def __init__(
        self,
        corp_id: str,
        secret: str,
        agent_id: str | None = None,
        api_base: str = "https://qyapi.weixin.qq.com",
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.corp_id, self.secret, self.agent_id = corp_id, secret, agent_id
        self.client = httpx.AsyncClient(base_url=api_base, timeout=10.0, transport=transport)
        self.token: tuple[str, float] | None = None
        self.lock = asyncio.Lock()

    async def access_token(self, refresh: bool = False) -> str:
        async with self.lock:
            if refresh or self.token is None or self.token[1] <= time.time():
                answer = (
                    await self.client.get(
                        "/cgi-bin/gettoken",
                        params={"corpid": self.corp_id, "corpsecret": self.secret},
                    )
                ).json()
                if answer.get("errcode", 0) != 0:
                    raise DeliveryFailed(f"WeCom gettoken: {answer.get('errmsg', answer)}")
                # Renew five minutes early: a token that expires mid-request wastes a retry.
                self.token = (answer["access_token"], time.time() + answer["expires_in"] - 300)
            return self.token[0]

    async def call(self, path: str, body: dict) -> dict:
        """POST one WeCom API (`/cgi-bin/...`) with the cached token; a token WeCom calls
        invalid or expired (40014, 42001) is fetched again once. DeliveryFailed on any other
        non-zero errcode (its code and message in the text, `.errcode` set)."""
        for refresh in (False, True):
            token = await self.access_token(refresh)
            answer = (
                await self.client.post(path, params={"access_token": token}, json=body)
            ).json()
            code = answer.get("errcode", 0)
            if code == 0:
                return answer
            if code not in TOKEN_EXPIRED:
                break
        failed = DeliveryFailed(f"WeCom {path}: {answer.get('errcode')} {answer.get('errmsg')}")
        failed.errcode = answer.get("errcode")  # type: ignore[attr-defined]
        raise failed

    async def get(self, path: str, params: dict) -> dict:
        """GET one WeCom API with the cached token (refreshed once as for `call`)."""
        for refresh in (False, True):
            token = await self.access_token(refresh)
            query = {**params, "access_token": token}
            answer = (await self.client.get(path, params=query)).json()
            code = answer.get("errcode", 0)
            if code == 0:
                return answer
            if code not in TOKEN_EXPIRED:
                break
        raise DeliveryFailed(f"WeCom {path}: {answer.get('errcode')} {answer.get('errmsg')}")

    async def download(self, media_id: str) -> tuple[bytes, str]:
        """A temporary media file (`/cgi-bin/media/get`): its bytes and content type. WeCom
        answers errors as JSON; the token is refreshed once as for `call`."""
        for refresh in (False, True):
            token = await self.access_token(refresh)
            answer = await self.client.get(
                "/cgi-bin/media/get", params={"access_token": token, "media_id": media_id}
            )
            kind = answer.headers.get("content-type", "application/octet-stream")
            if not kind.startswith(("application/json", "text/plain")):
                return answer.content, kind
            error = answer.json()
            if error.get("errcode") not in TOKEN_EXPIRED:
                break
        raise DeliveryFailed(f"WeCom media/get: {error.get('errcode')} {error.get('errmsg')}")

    async def __call__(self, sender_id: str, text: str, role: str, context: dict) -> None:
        agent_id = context.get("agent_id") or self.agent_id
        if not agent_id:
            raise DeliveryFailed("WeCom send needs the app's AgentID (none seen, none set)")
        body = {
            "touser": sender_id,
            "msgtype": "text",
            "agentid": int(agent_id),
            "text": {"content": text},
        }
        await self.call("/cgi-bin/message/send", body)


class DingTalkWebhookSender:
    def __init__(
        self,
        allowed_hosts: tuple[str, ...] = ("oapi.dingtalk.com", "api.dingtalk.com"),
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.allowed_hosts = allowed_hosts
        self.client = httpx.AsyncClient(timeout=10.0, transport=transport)

    async def __call__(self, sender_id: str, text: str, role: str, context: dict) -> None:
        url = context.get("session_webhook") or ""
        if not url:
            raise DeliveryFailed(f"no DingTalk sessionWebhook known for {sender_id}")
        expires_s = int(context.get("session_webhook_expires_s") or 0) or (
            int(context.get("session_webhook_expires_ms") or 0) // 1000  # routes stored before
        )
        if expires_s and expires_s < time.time():
            raise DeliveryFailed(f"DingTalk sessionWebhook of {sender_id} expired; wait for them")
        parsed = urlparse(url)
        if parsed.scheme != "https" or parsed.hostname not in self.allowed_hosts:
            raise DeliveryFailed(f"DingTalk sessionWebhook host {parsed.hostname} not allowed")
        out: dict = {"msgtype": "text", "text": {"content": text}}
        staff = context.get("staff_id")
        if context.get("conversation_type") == "2" and staff:
            out["at"] = {"atUserIds": [staff], "isAtAll": False}
        answer = (await self.client.post(url, json=out)).json()
        if answer.get("errcode", 0) != 0:
            raise DeliveryFailed(
                f"DingTalk webhook: {answer.get('errcode')} {answer.get('errmsg')}"
            )
