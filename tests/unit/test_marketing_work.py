"""Marketing beside the routes, through the real parts and API: metrics that move (no personal
data in labels), large launches queued and run by the replica's background task (202, status
URL, done), and the open-conversation rule asking the agent desk's own store."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from crm.api import build_api
from crm.conversation.handoff import HandoffDesk
from crm.marketing.audience import CustomerRecord, InMemorySource
from crm.marketing.campaigns import Marketing
from crm.marketing.spec import load_spec
from crm.monitoring.marketing import MarketingMetrics, metered
from crm.parts import build_parts
from privacy.atrest import open_cipher
from tests.support import FakeFeatures, LocalConversation, application_settings, issue_test_key
from tests.unit.test_application import models
from tests.unit.test_dialogue import intent, make_manager
from tests.unit.test_marketing_campaigns import NOON, FakeSender, customer, no_sleep, world
from tests.unit.test_marketing_routes import SPEC


def make_app(tmp_path: Path, tenants: tuple[str, ...] = ("default",)):
    """The real parts and API over a desk file, with in-memory customers in `tenants`, the
    replica's metrics wired to the replacement marketing part."""
    settings = application_settings(tmp_path)
    handoff = settings.dialogue.handoff.model_copy(update={"desk_path": "run/desk.db"})
    dialogue = settings.dialogue.model_copy(update={"handoff": handoff})
    settings = settings.model_copy(update={"dialogue": dialogue})
    features = FakeFeatures({"c1": {"recency_days": 3}})
    manager = make_manager(tmp_path, {"查余额": intent("balance")})
    parts = build_parts(
        settings, models(), LocalConversation(manager), features, features, lambda _: features
    )
    records = [
        CustomerRecord(
            f"c{i}", {"name": "李雷"}, frozenset({"at_risk"}), consent={"promotions": i != 3}
        )  # fmt: skip
        for i in range(1, 5)
    ]
    sender, production = FakeSender(), parts.marketing
    metrics = parts.marketing_work.metrics  # the replica's registry, as build_parts wired it
    parts.bus_events = []
    parts.marketing = Marketing(
        production.store,
        InMemorySource({tenant: records for tenant in tenants}),
        {"web_chat": sender, "dingtalk": sender, "wecom": sender},
        metered(parts.bus_events.append, metrics),
        open_conversation=production.open_conversation,  # the production desk check
        clock=lambda: NOON,
        sleep=no_sleep,
        on_skip=metrics.skipped,
    )
    keys = {
        "marketer": {"X-API-Key": issue_test_key(settings, "mk", "default", "marketer",
                                                 clearance=1, rate_per_s=1e3, burst=1000)},
    }  # fmt: skip
    return build_api(parts), keys, sender, parts


@pytest.fixture
def app(tmp_path: Path):
    api, keys, sender, parts = make_app(tmp_path)
    with TestClient(api) as client:
        yield client, keys, sender, parts
    parts.stop()


def create(client, keys) -> str:
    answer = client.post("/v1/marketing/campaigns", json=SPEC, headers=keys["marketer"])
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def test_marketing_metrics_move_per_campaign_channel_and_rule() -> None:
    registry = CollectorRegistry()
    metrics = MarketingMetrics(registry)
    people = [customer("c1"), customer("c2", promotions=False), customer("c3", marketing=False)]
    marketing, _, _, _ = world(people, on_skip=metrics.skipped)
    marketing.publish = metered(marketing.publish, metrics)
    text = "name: m\npurpose: promotions\naudience: {all: []}\nchannels: [wecom]\n"
    cid = marketing.create("acme", load_spec(text + "templates: {wecom: {text: hi}}"))["id"]
    asyncio.run(marketing.launch("acme", cid))
    marketing.record_outcome("acme", cid, "c1", "delivered")
    marketing.record_outcome("acme", cid, "c1", "converted", value=30.0)
    marketing.record_outcome("acme", cid, "c1", "converted", value=30.0)  # once per customer
    get = registry.get_sample_value
    base = {"tenant": "acme", "campaign": cid, "channel": "wecom"}
    assert get("scrm_marketing_sends_total", {**base, "arm": "control"}) == 1
    assert get("scrm_marketing_outcomes_total", {**base, "kind": "delivered"}) == 1
    assert get("scrm_marketing_outcomes_total", {**base, "kind": "converted"}) == 1
    blocked = {"tenant": "acme", "campaign": cid}
    assert get("scrm_marketing_blocked_total", {**blocked, "rule": "purpose"}) == 1
    assert get("scrm_marketing_blocked_total", {**blocked, "rule": "consent"}) == 1
    labels = [s.labels for m in registry.collect() for s in m.samples]
    assert not any(v in ("c1", "c2", "c3") for s in labels for v in s.values())


def test_a_large_launch_is_queued_run_in_the_background_and_done(app) -> None:
    client, keys, sender, parts = app
    parts.marketing_work.launches.inline_max = 2
    parts.marketing_work.every_s = 0.05
    cid = create(client, keys)
    answer = client.post(f"/v1/marketing/campaigns/{cid}/launch", headers=keys["marketer"])
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["job"]["state"] == "queued" and body["job"]["audience"] == 4
    assert sender.sent == []  # nothing inside the request
    again = client.post(f"/v1/marketing/campaigns/{cid}/launch", headers=keys["marketer"])
    assert again.status_code == 202 and again.json()["job"]["id"] == body["job"]["id"]
    url = body["status_url"]
    assert client.get(url, headers=keys["marketer"]).json()["state"] == "queued"

    async def start() -> None:
        parts.start()  # the replica's background tasks, on the app's loop

    client.portal.call(start)
    deadline, job = time.monotonic() + 20, {}
    while time.monotonic() < deadline:
        job = client.get(url, headers=keys["marketer"]).json()
        if job["state"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert job["state"] == "done", job
    assert job["run"]["counts"] == {"sent": 3, "skipped:purpose": 1} and job["finished_at"]
    assert sorted(c for _, c, _ in sender.sent) == ["c1", "c2", "c4"]
    missing = client.get(url.replace(body["job"]["id"], "nope"), headers=keys["marketer"])
    assert missing.status_code == 404
    text = client.get("/metrics").text
    assert 'scrm_marketing_launches_total{mode="queued",outcome="done"} 1.0' in text
    assert "scrm_marketing_sends_total" in text


def test_a_small_launch_still_runs_inline(app) -> None:
    client, keys, sender, _ = app
    cid = create(client, keys)
    answer = client.post(f"/v1/marketing/campaigns/{cid}/launch", headers=keys["marketer"])
    assert answer.status_code == 200 and answer.json()["run"] == {"sent": 3, "skipped:purpose": 1}
    assert len(sender.sent) == 3


def test_a_customer_in_an_open_desk_conversation_is_suppressed(app, tmp_path: Path) -> None:
    client, keys, sender, parts = app
    settings = parts.settings
    cipher = open_cipher(settings.root, settings.privacy)  # the deployment's keys
    desk = HandoffDesk("general", settings.path("run/desk.db"), cipher)
    ticket = desk.open("customer:c1", "general", "投诉")
    other = desk.open("customer:c2", "general", "咨询")
    desk.register("a1", {"general"}, capacity=5)
    desk.accept(other.id, "a1")
    desk.finish(other.id, "a1", "resolved")
    assert parts.marketing.open_conversation("default", "c1") is True
    assert parts.marketing.open_conversation("default", "c2") is False  # resolved
    cid = create(client, keys)
    dry = client.post(f"/v1/marketing/campaigns/{cid}/dry-run", headers=keys["marketer"])
    assert dry.json()["verdicts"]["open_conversation"] == 1
    answer = client.post(f"/v1/marketing/campaigns/{cid}/launch", headers=keys["marketer"])
    assert answer.json()["run"]["skipped:open_conversation"] == 1
    assert sorted(c for _, c, _ in sender.sent) == ["c2", "c4"]
    text = client.get("/metrics").text
    assert 'rule="open_conversation"' in text
    desk.accept(ticket.id, "a1")  # with an agent: still open
    assert asyncio.run(parts.marketing.tick("default"))[0]["counts"].get("sent") is None
    desk.finish(ticket.id, "a1", "resolved")  # the conversation ends: the next run sends
    asyncio.run(parts.marketing.tick("default"))
    assert sorted(c for _, c, _ in sender.sent) == ["c1", "c2", "c4"]


def test_vendor_receipts_signed_as_their_webhooks_become_delivered_events(
    tmp_path: Path, monkeypatch
) -> None:
    from crm.channels.wecom import WeComCrypto, encrypted_request_xml
    from tests.unit.conftest import AES_KEY, CORP, SECRET, TOKEN
    from tests.unit.test_channels_vendors import dingtalk_headers

    for name, value in (("SCRM_WECOM_TOKEN", TOKEN), ("SCRM_WECOM_AES_KEY", AES_KEY),
                        ("SCRM_WECOM_CORP_ID", CORP), ("SCRM_WECOM_SECRET", "s"),
                        ("SCRM_DINGTALK_APP_SECRET", SECRET)):  # fmt: skip
        monkeypatch.setenv(name, value)
    api, keys, sender, parts = make_app(tmp_path, ("default", CORP))
    identity, marketing = parts.channels.identity, parts.marketing
    identity.link("default", "dingtalk", "staff-1", "c1")
    identity.link("default", "dingtalk", "staff-2", "c2")
    identity.link(CORP, "wecom", "wm-1", "c1")
    ding = {**SPEC, "channels": ["dingtalk"], "templates": {"dingtalk": {"text": "专享"}}}
    with TestClient(api) as client:
        cid = client.post("/v1/marketing/campaigns", json=ding, headers=keys["marketer"]).json()
        client.post(f"/v1/marketing/campaigns/{cid['id']}/launch", headers=keys["marketer"])
        url = "/v1/marketing/receipts/dingtalk"
        body = {"errcode": 0, "send_result": {"read_user_id_list": ["staff-1"],
                "unread_user_id_list": ["staff-2", "staff-9"]}}  # fmt: skip
        forged = client.post(url, json=body, headers=dingtalk_headers(secret="wrong"))
        assert forged.status_code == 401 and parts.bus_events[-1].type == "campaign.sent"
        headers = dingtalk_headers()
        answer = client.post(url, json=body, headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["by_outcome"] == {"delivered": 2, "opened": 1, "unknown_sender": 1}
        again = client.post(url, json=body, headers=headers)  # the vendor retries: counted once
        assert again.json()["by_outcome"] == {"duplicates": 3, "unknown_sender": 1}
        outcomes = [(e.type, e.customer_id, e.campaign_id, e.channel) for e in parts.bus_events
                    if e.type != "campaign.sent"]  # fmt: skip
        assert outcomes == [
            ("campaign.delivered", "c2", cid["id"], "dingtalk"),
            ("campaign.delivered", "c1", cid["id"], "dingtalk"),
            ("campaign.opened", "c1", cid["id"], "dingtalk"),
        ]
        assert client.post(url, content=b"{}", headers=dingtalk_headers()).status_code == 422

        wecom = marketing.create(CORP, load_spec(
            "name: w\npurpose: promotions\naudience: {all: []}\nchannels: [wecom]\n"
            "templates: {wecom: {text: hi}}"))["id"]  # fmt: skip
        asyncio.run(marketing.launch(CORP, wecom))
        results = {
            "errcode": 0,
            "send_list": [
                {"external_userid": "wm-1", "userid": "zhang", "status": 1, "send_time": 1},
                {"external_userid": "wm-2", "status": 2},
            ],
        }
        crypto = WeComCrypto(TOKEN, AES_KEY, CORP)
        envelope, query = encrypted_request_xml(crypto, json.dumps(results))
        tampered = {**query, "msg_signature": "0" * 40}
        url = "/v1/marketing/receipts/wecom"
        assert client.post(url, content=envelope, params=tampered).status_code == 401
        answer = client.post(url, content=envelope, params=query)
        assert answer.status_code == 200 and answer.json()["by_outcome"] == {"delivered": 1}
        last = parts.bus_events[-1]
        assert (last.type, last.tenant, last.customer_id, last.campaign_id) == (
            "campaign.delivered",
            CORP,
            "c1",
            wecom,
        )
        assert client.post("/v1/marketing/receipts/mqtt", json={}).status_code == 404
        text = client.get("/metrics").text
        series = f'campaign="{wecom}",channel="wecom",kind="delivered",tenant="{CORP}"'
        assert f"scrm_marketing_outcomes_total{{{series}}} 1.0" in text
    parts.stop()


def test_the_production_wiring_fires_a_churn_campaign_from_the_bus(app) -> None:
    """The gateway's bus, `scrm events run` (the stream processors over the settings' derived
    file) and the replica's marketing task: one message, also after a replay of the bus."""
    from datetime import UTC, datetime

    from events.schemas import PredictionMade
    from pipelines.events import replay, run_processors

    client, keys, sender, parts = app
    trigger = {"events": ["signal:churn_crossed"], "churn_threshold": 0.7}
    spec = {**SPEC, "name": "churn-save", "trigger": trigger}
    cid = client.post("/v1/marketing/campaigns", json=spec, headers=keys["marketer"]).json()["id"]
    client.post(f"/v1/marketing/campaigns/{cid}/launch", headers=keys["marketer"])
    now = datetime.now(UTC)
    scores = [("c1", 0.4), ("c1", 0.9), ("c2", 0.5), ("c3", 0.95)]  # c3: no consent
    parts.bus.publish(
        [PredictionMade(customer_id=c, model="churn", confidence=p, at=now) for c, p in scores]
    )
    assert run_processors(parts.settings) > 0
    asyncio.run(parts.marketing_work.step())
    assert [c for _, c, _ in sender.sent] == ["c1"]
    campaign = client.get(f"/v1/marketing/campaigns/{cid}", headers=keys["marketer"]).json()
    assert campaign["audience_size"] == 2  # c1 and c3 joined; c3 was refused by its consent
    replay(parts.settings)  # the derived file set aside and rebuilt from the start of the bus
    asyncio.run(parts.marketing_work.step())
    assert [c for _, c, _ in sender.sent] == ["c1"]
    rows = parts.marketing_work.feed.db.execute(
        "SELECT type, outcome, COUNT(*) FROM marketing_outbox GROUP BY type, outcome"
    ).fetchall()
    # The rebuilt file, drained again (4 predictions, 4 first-or-rising scores): c1 is a member
    # already, so no row joins this time (the old file has c1's signal as `joined`).
    assert sorted(rows) == [("prediction.made", "none", 4), ("signal:churn_crossed", "none", 4)]
