"""Vendor delivery and read receipts -> `campaign.delivered` (and `campaign.opened`) events.

Neither vendor pushes a per-customer receipt for these sends by itself: WeCom answers a mass
message's per-customer result when asked (获取企业群发成员执行结果,
`externalcontact/get_groupmsg_send_result`: `send_list` of `{external_userid, userid, status,
send_time}`, status 1 = sent to the customer), DingTalk a work notice's read state (
`topapi/message/corpconversation/getsendresult`: `send_result.read_user_id_list` /
`unread_user_id_list`). Whatever fetches those results (the vendor integration, a poller)
posts them, in the vendor's own shape, to `POST /v1/marketing/receipts/{wecom|dingtalk}`,
signed exactly as that vendor's webhooks are, and verified here by the channel's own adapter
before the body is parsed: WeCom's msg_signature over the encrypted envelope, its timestamp
window, corp id and replay cache; DingTalk's timestamp + HMAC `sign` headers and replay cache.
A bad signature is 401, an unconfigured channel 503, a malformed body 422.

Each receipt's sender id is mapped to the customer by the identity map; it counts for the
customer's latest campaign message sent on that channel within `window_s` (a receipt names
the vendor's message, not ours), recorded once per (campaign, customer, kind) by
`Marketing.record_outcome`, which publishes the event on the bus. Unknown senders and
receipts with no matching send are counted, not guessed.
"""

# No `from __future__ import annotations`: FastAPI must see real types on the routes.
import json
from collections import Counter
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crm.channels.routes import raw_request
from crm.channels.wecom import field, parse_xml
from crm.messages import ChannelAuthError, ChannelNotConfigured
from serving.http import ERRORS

WINDOW_S = 7 * 86_400.0


class WeComSendResult(BaseModel):
    model_config = ConfigDict(extra="ignore")
    external_userid: str = Field(min_length=1, max_length=128)
    status: int = Field(ge=0, le=3)  # 0 not sent, 1 sent, 2 not a contact, 3 limit reached


class WeComSendResults(BaseModel):
    model_config = ConfigDict(extra="ignore")
    send_list: list[WeComSendResult] = Field(max_length=10_000)


class DingTalkResult(BaseModel):
    model_config = ConfigDict(extra="ignore")
    read_user_id_list: list[str] = Field(default_factory=list, max_length=10_000)
    unread_user_id_list: list[str] = Field(default_factory=list, max_length=10_000)


class DingTalkSendResult(BaseModel):
    model_config = ConfigDict(extra="ignore")
    send_result: DingTalkResult


def wecom_receipts(adapter: Any, raw: Any) -> list[tuple[str, tuple[str, ...]]]:
    """Verified as WeCom messages are (crm/channels/wecom.py), then (sender, kinds)."""
    sig, ts, nonce = adapter._query(raw, "msg_signature", "timestamp", "nonce")
    adapter.check_time(ts)
    if field(parse_xml(raw.body), "ToUserName") not in (None, adapter.corp_id):
        raise ChannelAuthError("WeCom ToUserName is not this corp id")
    plain = adapter.crypto.decrypt_message(sig, ts, nonce, raw.body)
    if not adapter.replays.admit(f"{sig}:{nonce}", raw.body):
        raise ChannelAuthError("WeCom msg_signature already used with another body")
    results = WeComSendResults.model_validate_json(plain)
    return [(r.external_userid, ("delivered",)) for r in results.send_list if r.status == 1]


def dingtalk_receipts(adapter: Any, raw: Any) -> list[tuple[str, tuple[str, ...]]]:
    """Verified as DingTalk messages are (crm/channels/dingtalk.py), then (sender, kinds):
    unread is delivered, read is delivered and opened."""
    adapter.check(raw.headers)
    if not adapter.replays.admit(raw.headers["sign"], raw.body):
        raise ChannelAuthError("DingTalk sign already used with another body (replay)")
    result = DingTalkSendResult.model_validate_json(raw.body).send_result
    return [(s, ("delivered",)) for s in result.unread_user_id_list] + [
        (s, ("delivered", "opened")) for s in result.read_user_id_list
    ]


PARSERS = {"wecom": wecom_receipts, "dingtalk": dingtalk_receipts}


def latest_send(marketing: Any, tenant: str, customer_id: str, channel: str) -> str | None:
    """The campaign of the customer's latest message sent on `channel` within the window."""
    since = (marketing.clock() - timedelta(seconds=WINDOW_S)).isoformat()
    row = marketing.store._run(
        "SELECT campaign_id FROM sends WHERE tenant = ? AND customer_id = ? AND channel = ? "
        "AND status = 'sent' AND at >= ? ORDER BY at DESC LIMIT 1",
        (tenant, customer_id, channel, since),
    ).fetchone()
    return row[0] if row else None


def record_receipts(
    marketing: Any, identity: Any, tenant: str, channel: str, receipts: list
) -> dict[str, int]:
    """Each receipt as outcomes of the campaign it answers; counts by what became of it."""
    counts: Counter = Counter()
    for sender, kinds in receipts:
        customer = identity.lookup(tenant, channel, sender)
        campaign = latest_send(marketing, tenant, customer, channel) if customer else None
        if campaign is None:
            counts["unknown_sender" if customer is None else "no_send"] += 1
            continue
        for kind in kinds:
            new = marketing.record_outcome(tenant, campaign, customer, kind, channel=channel)
            counts[kind if new else "duplicates"] += 1
    return dict(counts)


def receipt_router(access: Any, channels: Any, marketing_of: Any) -> APIRouter:
    router = APIRouter(prefix="/v1/marketing", tags=["marketing"])

    async def vendor_address(request: Request) -> None:
        """Signed by the vendor (verified in the route, before parsing); limited per address."""
        access.check_address(request, "webhook/receipts")

    vendor_address.scrm_guard = True  # type: ignore[attr-defined]

    @router.post(
        "/receipts/{channel}",
        responses={**ERRORS, 503: {"description": "channel not configured"}},
        dependencies=[Depends(vendor_address)],
    )
    async def receipts(channel: str, request: Request) -> dict[str, Any]:
        """A vendor's send/read results, signed as its webhooks: `campaign.delivered` (and
        `campaign.opened` for DingTalk reads) for the campaigns they answer."""
        if channel not in PARSERS:
            raise HTTPException(404, f"no receipts for channel {channel[:32]!r}")
        try:
            adapter = channels.adapter(channel)
            raw = await raw_request(request, channels.max_body_bytes)
            found = PARSERS[channel](adapter, raw)
        except ChannelNotConfigured as error:
            raise HTTPException(503, str(error)) from None
        except ChannelAuthError as error:
            raise HTTPException(401, str(error)) from None
        except (ValidationError, ValueError, json.JSONDecodeError) as error:
            raise HTTPException(422, f"{channel} receipts: {str(error)[:300]}") from None
        counts = record_receipts(marketing_of(), channels.identity, adapter.tenant, channel, found)
        return {"receipts": len(found), "by_outcome": counts}

    return router
