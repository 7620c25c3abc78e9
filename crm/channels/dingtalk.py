"""DingTalk outgoing robot (企业内部机器人, HTTP mode): signed JSON in, JSON reply out.

DingTalk sends `timestamp` (ms) and `sign` headers, sign = base64(HMAC-SHA256(key=app secret,
msg=timestamp + "\\n" + app secret)). A wrong sign, or a timestamp more than `max_skew_s` away
from now (DingTalk's own rule is one hour), is a ChannelAuthError (401), so a captured request
cannot be replayed later. Since the sign covers the timestamp only, a (timestamp, sign) pair
seen once is accepted again only with the very same body (privacy/replay.py), and the tenant is
the configured robot's, never the body's unsigned `chatbotCorpId`. The answer is a robot
message in the response body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crm.messages import (
    ChannelAuthError,
    ChannelResponse,
    InboundMessage,
    RawRequest,
    Reply,
)
from privacy.replay import ReplayCache


def sign(timestamp: str, secret: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


class DingTalkText(BaseModel):
    content: str = Field(min_length=1)


class DingTalkMessage(BaseModel):
    """The fields of DingTalk's robot callback this gateway uses; others are ignored."""

    model_config = ConfigDict(extra="ignore")
    msgtype: str
    text: DingTalkText | None = None
    msgId: str = Field(min_length=1, max_length=128)  # noqa: N815 (DingTalk's names)
    conversationId: str = Field(min_length=1)  # noqa: N815
    conversationType: str = "1"  # noqa: N815 (1 single chat, 2 group)
    senderId: str | None = None  # noqa: N815
    senderStaffId: str | None = None  # noqa: N815
    chatbotCorpId: str | None = None  # noqa: N815
    senderCorpId: str | None = None  # noqa: N815
    # Where to send later messages in this conversation (agent replies), and until when (ms).
    sessionWebhook: str | None = None  # noqa: N815
    sessionWebhookExpiredTime: int | None = None  # noqa: N815


class DingTalkAdapter:
    name = "dingtalk"

    def __init__(self, app_secret: str, max_skew_s: float = 3600.0, tenant: str = "default"):
        self.secret = app_secret
        self.max_skew_s = max_skew_s
        self.tenant = tenant
        self.replays = ReplayCache(2 * max_skew_s)

    def check(self, headers: Any) -> None:
        timestamp, given = headers.get("timestamp"), headers.get("sign")
        if not timestamp or not given:
            raise ChannelAuthError("DingTalk request lacks the timestamp and sign headers")
        if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 13:
            raise ChannelAuthError("DingTalk timestamp is not milliseconds (at most 13 digits)")
        if len(given) > 128:
            raise ChannelAuthError("DingTalk sign is too long")
        skew = abs(time.time() - int(timestamp) / 1000)
        if skew > self.max_skew_s:
            raise ChannelAuthError(
                f"DingTalk timestamp is {skew:.0f} s away from now (at most {self.max_skew_s:.0f})"
            )
        if not hmac.compare_digest(sign(timestamp, self.secret), given):
            raise ChannelAuthError("DingTalk sign does not match")

    def accept(self, request: RawRequest) -> InboundMessage:
        self.check(request.headers)
        if not self.replays.admit(request.headers["sign"], request.body):
            raise ChannelAuthError("DingTalk sign already used with another body (replay)")
        try:
            body = DingTalkMessage.model_validate_json(request.body)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise ValueError(f"DingTalk body: {where}: {first['msg']}") from None
        if body.msgtype != "text" or body.text is None or not body.text.content.strip():
            raise ValueError(f"DingTalk msgtype {body.msgtype} is not handled; text only")
        sender = body.senderStaffId or body.senderId
        if not sender:
            raise ValueError("DingTalk body: no senderStaffId or senderId")
        return InboundMessage(
            tenant=self.tenant,  # the configured robot's: the body's corp ids are unsigned
            channel=self.name,
            sender_id=sender,
            text=body.text.content.strip(),
            message_id=body.msgId,
            context={
                "conversation_id": body.conversationId,
                "conversation_type": body.conversationType,
                "staff_id": body.senderStaffId or "",
                "session_webhook": body.sessionWebhook or "",
                # Seconds, not DingTalk's ms: a stored 13-digit number reads as a card number
                # to the log/at-rest scanners (privacy/scan.py).
                "session_webhook_expires_s": str((body.sessionWebhookExpiredTime or 0) // 1000),
            },
        )

    def respond(self, message: InboundMessage, reply: Reply | None) -> ChannelResponse:
        if reply is None or not reply.text:
            return ChannelResponse("{}")  # DingTalk: 200 with no robot message
        out: dict[str, Any] = {"msgtype": "text", "text": {"content": reply.text}}
        staff = message.context.get("staff_id")
        if message.context.get("conversation_type") == "2" and staff:
            out["at"] = {"atUserIds": [staff], "isAtAll": False}  # answer the asker in a group
        return ChannelResponse(json.dumps(out, ensure_ascii=False))

    @classmethod
    def from_env(
        cls, secret_env: str, max_skew_s: float, tenant: str = "default"
    ) -> DingTalkAdapter | None:
        secret = os.environ.get(secret_env)
        return cls(secret, max_skew_s, tenant) if secret else None
