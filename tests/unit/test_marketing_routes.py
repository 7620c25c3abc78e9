"""The marketing routes through the real API and guard: the marketer of the tenant only, 4xx
with a clear detail, launch idempotent over HTTP, another tenant's marketer sees nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from crm.api import build_api
from crm.marketing.audience import CustomerRecord, InMemorySource
from crm.marketing.campaigns import Marketing
from crm.messages import InboundMessage
from crm.parts import build_parts
from tests.support import FakeFeatures, LocalConversation, application_settings, issue_test_key
from tests.unit.test_application import models
from tests.unit.test_dialogue import intent, make_manager
from tests.unit.test_marketing_campaigns import NOON, FakeSender, no_sleep

SPEC = {
    "name": "winback",
    "purpose": "promotions",
    "audience": {"all": [{"kind": "segment", "name": "at_risk"}]},
    "channels": ["web_chat"],
    "templates": {"web_chat": {"text": "{surname}先生/女士，专享", "plain": "专享"}},
}


@pytest.fixture
def app(tmp_path: Path):
    settings = application_settings(tmp_path)
    features = FakeFeatures({"c1": {"recency_days": 3}})
    manager = make_manager(tmp_path, {"查余额": intent("balance")})
    parts = build_parts(
        settings, models(), LocalConversation(manager), features, features, lambda _: features
    )
    records = [
        CustomerRecord(
            f"c{i}", {"name": "李雷"}, frozenset({"at_risk"}), consent={"promotions": i != 3}
        )
        for i in range(1, 5)
    ]
    sender, bus = FakeSender(), []
    parts.marketing = Marketing(
        parts.marketing.store,  # the one the opt-out handler writes to
        InMemorySource({"default": records}),
        {"web_chat": sender},
        bus.append,
        clock=lambda: NOON,
        sleep=no_sleep,
    )

    def key(name: str, tenant: str, role: str) -> dict[str, str]:
        made = issue_test_key(
            settings, name, tenant, role, clearance=1, rate_per_s=1000.0, burst=1000
        )
        return {"X-API-Key": made}

    keys = {
        "marketer": key("mk", "default", "marketer"),
        "other": key("mk2", "globex", "marketer"),
        "supervisor": key("sup", "default", "supervisor"),
    }
    with TestClient(build_api(parts)) as client:
        yield client, keys, sender, bus, parts
    parts.stop()


def test_marketer_previews_defines_dry_runs_launches_once(app) -> None:
    client, keys, sender, bus, _ = app
    mk = keys["marketer"]
    seen = client.post("/v1/marketing/audiences/preview", json=SPEC["audience"], headers=mk)
    assert seen.status_code == 200, seen.text
    assert seen.json()["count"] == 4 and "c1" not in seen.json()["sample"]
    made = client.post("/v1/marketing/campaigns", json=SPEC, headers=mk)
    assert made.status_code == 201, made.text
    cid = made.json()["id"]
    assert made.json()["state"] == "draft"
    dry = client.post(f"/v1/marketing/campaigns/{cid}/dry-run", headers=mk).json()
    assert dry["verdicts"] == {"send": 3, "purpose": 1} and sender.sent == []
    run = client.post(f"/v1/marketing/campaigns/{cid}/launch", headers=mk)
    assert run.status_code == 200, run.text
    assert run.json()["run"] == {"sent": 3, "skipped:purpose": 1}
    again = client.post(f"/v1/marketing/campaigns/{cid}/launch", headers=mk).json()
    assert again["run"] == {"already": 3, "skipped:purpose": 1} and len(sender.sent) == 3
    assert len(bus) == 3 and "members" not in again["campaign"]
    assert client.post(f"/v1/marketing/campaigns/{cid}/pause", headers=mk).status_code == 200
    refused = client.post(f"/v1/marketing/campaigns/{cid}/pause", headers=mk)
    assert refused.status_code == 409 and "running" in refused.json()["detail"]
    resumed = client.post(f"/v1/marketing/campaigns/{cid}/resume", headers=mk)
    assert resumed.status_code == 200 and resumed.json()["campaign"]["state"] == "running"
    listed = client.get("/v1/marketing/campaigns", headers=mk).json()
    assert [c["id"] for c in listed] == [cid]


def test_another_tenant_and_other_roles_are_refused(app) -> None:
    client, keys, sender, _, _ = app
    cid = client.post("/v1/marketing/campaigns", json=SPEC, headers=keys["marketer"]).json()["id"]
    for verb, path in [("get", ""), ("post", "/dry-run"), ("post", "/launch"), ("post", "/pause")]:
        theirs = client.request(verb, f"/v1/marketing/campaigns/{cid}{path}", headers=keys["other"])
        unknown = client.request(verb, f"/v1/marketing/campaigns/nope{path}", headers=keys["other"])
        assert theirs.status_code == 404 and theirs.json()["detail"] == unknown.json()["detail"], (
            theirs.text
        )
    assert client.get("/v1/marketing/campaigns", headers=keys["other"]).json() == []
    preview = client.post("/v1/marketing/audiences/preview", json={}, headers=keys["other"])
    assert preview.json()["count"] == 0  # globex has no customers here
    denied = client.post(f"/v1/marketing/campaigns/{cid}/launch", headers=keys["supervisor"])
    assert denied.status_code == 403
    assert client.post(f"/v1/marketing/campaigns/{cid}/launch").status_code == 401
    assert sender.sent == []


@pytest.mark.parametrize(
    "change, field",
    [
        ({"templates": {"web_chat": {"text": "{phone}"}}}, "phone"),
        ({"audience": {"all": [{"kind": "sql", "name": "x", "value": "1=1"}]}}, "kind"),
        ({"purpose": ""}, "purpose"),
        ({"holdout": 0.9}, "holdout"),
    ],
)
def test_bad_specs_answer_422_naming_the_problem(app, change: dict, field: str) -> None:
    client, keys, _, _, _ = app
    answer = client.post(
        "/v1/marketing/campaigns", json={**SPEC, **change}, headers=keys["marketer"]
    )
    assert answer.status_code == 422 and field in answer.text, answer.text


def test_td_through_the_gateway_handler_then_launch_skips_the_customer(app) -> None:
    client, keys, sender, bus, parts = app
    td = InboundMessage(
        tenant="default",
        channel="dingtalk",
        sender_id="d-2",
        customer_id="c2",
        text="TD",
        message_id="m-1",
    )
    assert asyncio.run(parts.handler(td)).text.startswith("已为您退订")
    assert asyncio.run(parts.worker.handler(td)).text.startswith("已为您退订")
    cid = client.post("/v1/marketing/campaigns", json=SPEC, headers=keys["marketer"]).json()["id"]
    run = client.post(f"/v1/marketing/campaigns/{cid}/launch", headers=keys["marketer"]).json()
    assert run["run"] == {"sent": 2, "skipped:purpose": 1, "skipped:opt_out": 1}
    assert "c2" not in [c for _, c, _ in sender.sent]
