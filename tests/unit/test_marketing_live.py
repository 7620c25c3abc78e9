"""Live events into marketing (crm/marketing/live.py) and outcomes over HTTP
(crm/marketing/outcomes.py): replies attributed once through the gateway's handler, a broken
marketing hook never costs the reply, outcomes idempotent and tenant-guarded, a posted
customer event starting an event-triggered campaign."""

from __future__ import annotations

import asyncio
from typing import Any

from crm.marketing.live import replies_fed
from crm.messages import InboundMessage, Reply
from tests.unit.test_marketing_routes import SPEC, app  # noqa: F401 (the fixture)


def message(customer: str, text: str = "查余额", message_id: str = "m-1") -> InboundMessage:
    return InboundMessage(
        tenant="default",
        channel="web_chat",
        sender_id=f"s-{customer}",
        customer_id=customer,
        text=text,
        message_id=message_id,
    )


def through(handler: Any, inbound: InboundMessage, fed: Any = None) -> Any:
    """The handler's reply, once the marketing tasks it started (in `fed`) have finished."""
    fed = fed or handler

    async def go() -> Any:
        reply = await handler(inbound)
        await asyncio.gather(*fed.pending)
        return reply

    return asyncio.run(go())


def fed_handler(parts: Any) -> Any:
    """The replies feed inside the gateway's wrapped handler (opt_out_handler's inner)."""
    inner = parts.handler.__closure__
    return next(c.cell_contents for c in inner if hasattr(c.cell_contents, "pending"))


def launched(client: Any, keys: dict, spec: dict | None = None) -> str:
    mk = keys["marketer"]
    cid = client.post("/v1/marketing/campaigns", json=spec or SPEC, headers=mk).json()["id"]
    assert client.post(f"/v1/marketing/campaigns/{cid}/launch", headers=mk).status_code == 200
    return cid


def test_a_reply_through_the_gateway_handler_is_attributed_once(app) -> None:  # noqa: F811
    client, keys, _, bus, parts = app
    cid = launched(client, keys)
    fed = fed_handler(parts)
    assert through(parts.handler, message("c1"), fed).text  # the dialogue answered
    assert [e.customer_id for e in bus if e.type == "campaign.replied"] == ["c1"]
    through(parts.handler, message("c1"), fed)  # the same message again (a channel retry)
    through(parts.handler, message("c1", message_id="m-2"), fed)
    replied = [e for e in bus if e.type == "campaign.replied"]
    assert [(e.customer_id, e.campaign_id) for e in replied] == [("c1", cid)]
    assert parts.marketing.store.outcomes_of(cid, "c1") == {"replied"}
    assert parts.marketing.store.outcomes_of(cid, "c2") == set()
    td = asyncio.run(parts.handler(message("c4", "TD")))  # opt-out: not a reply
    assert td.text.startswith("已为您退订")
    assert parts.marketing.store.outcomes_of(cid, "c4") == set()


def test_a_failing_marketing_hook_still_returns_the_dialogue_reply(caplog) -> None:
    class Broken:
        async def on_event(self, event: Any) -> list[str]:
            raise RuntimeError("campaign store gone")

    async def dialogue(inbound: InboundMessage) -> Reply:
        return Reply(text="您的余额是 100 元")

    handler = replies_fed(dialogue, lambda: Broken())
    assert through(handler, message("c1")).text == "您的余额是 100 元"
    assert "marketing could not take event message.received" in caplog.text
    bad_getter = replies_fed(dialogue, lambda: None)  # no marketing: just the reply
    assert through(bad_getter, message("c1")).text == "您的余额是 100 元"


def test_outcomes_change_results_once_and_are_guarded(app) -> None:  # noqa: F811
    client, keys, _, bus, parts = app
    cid = launched(client, keys)
    mk = keys["marketer"]
    before = client.get(f"/v1/marketing/campaigns/{cid}/results", headers=mk).json()
    batch = {
        "outcomes": [
            {"customer_id": "c1", "kind": "converted", "value": 120.5},
            {"customer_id": "c2", "kind": "converted", "at": "2026-12-05T05:00:00Z"},
            {"customer_id": "c1", "kind": "delivered"},
        ]
    }
    url = f"/v1/marketing/campaigns/{cid}/outcomes"
    answer = client.post(url, json=batch, headers=mk)
    assert answer.status_code == 200, answer.text
    assert answer.json()["by_kind"] == {"converted": 2, "delivered": 1}
    again = client.post(url, json=batch, headers=mk).json()
    assert again["recorded"] == 0 and again["duplicates"] == 3
    after = client.get(f"/v1/marketing/campaigns/{cid}/results", headers=mk).json()
    converted = [o for o in parts.marketing.store.outcomes(cid) if o[1] == "converted"]
    assert sorted(o[0] for o in converted) == ["c1", "c2"]
    assert len([e for e in bus if e.type == "campaign.converted"]) == 2
    rates_before = before["summary"]["conversion_rates"]
    rates_after = after["summary"]["conversion_rates"]
    assert sum(rates_after.values()) > sum(rates_before.values()) == 0, (rates_after, before)
    theirs = client.post(url, json=batch, headers=keys["other"])
    assert theirs.status_code == 404
    assert client.post(url, json=batch, headers=keys["supervisor"]).status_code == 403
    bad = {"outcomes": [{"customer_id": "c1", "kind": "bought"}]}
    refused = client.post(url, json=bad, headers=mk)
    assert refused.status_code == 422 and "kind" in refused.text, refused.text
    negative = {"outcomes": [{"customer_id": "c1", "kind": "converted", "value": -1}]}
    assert client.post(url, json=negative, headers=mk).status_code == 422
    outsider = {"outcomes": [{"customer_id": "c9", "kind": "converted"}, *batch["outcomes"]]}
    stranger = client.post(url, json=outsider, headers=mk)
    assert stranger.status_code == 422 and "c9" in stranger.json()["detail"]
    too_many = {"outcomes": [{"customer_id": "c1", "kind": "opened"}] * 1001}
    assert client.post(url, json=too_many, headers=mk).status_code == 422
    assert parts.marketing.store.outcomes_of(cid, "c1") == {"converted", "delivered"}


def test_a_posted_customer_event_starts_an_event_triggered_campaign(app) -> None:  # noqa: F811
    client, keys, sender, _, parts = app
    spec = {**SPEC, "name": "after-a-turn", "trigger": {"events": ["turn.recorded"]}}
    cid = launched(client, keys, spec)
    assert parts.marketing.store.get("default", cid)["members"] == []  # joins on events
    assert sender.sent == []
    posted = client.post(
        "/v1/customers/c1/events",
        json={"channel": "wecom", "intent": "balance"},
        headers=keys["supervisor"],
    )
    assert posted.status_code == 202, posted.text
    assert parts.marketing.store.get("default", cid)["members"] == ["c1"]
    assert [c for _, c, _ in sender.sent] == ["c1"]
    again = client.post(
        "/v1/customers/c1/events", json={"channel": "wecom"}, headers=keys["supervisor"]
    )
    assert again.status_code == 202 and len(sender.sent) == 1  # joined once, sent once
