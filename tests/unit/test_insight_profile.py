"""The 360 profile and tag routes through the real API (guard, masking) over fakes, the tag
engine's rules and models, the audit, and the WeCom tag client against a fake vendor."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from crm.api import build_api
from crm.insight import schema
from crm.insight.graph import EmbeddedGraph
from crm.insight.tags import Tag, TagEngine, TagStore, load_rules
from crm.insight.wecom_tags import WeComTagClient, WeComTagError, wecom_pusher
from crm.parts import build_parts
from tests.support import FakeFeatures, LocalConversation, application_settings, issue_test_key
from tests.unit.test_application import models
from tests.unit.test_dialogue import intent, make_manager

CUSTOMER = "17850"
RULES = Path(__file__).resolve().parents[2] / "crm" / "insight" / "tag_rules.yaml"
FEATURES = {
    "recency_days": 3, "tenure_days": 200, "frequency_30d": 4, "monetary_total": 900.0,
    "rfm_tier": "champions", "cluster": 1, "segment_description": "frequent buyers",
    "clv": 512.5, "high_value": 1, "negative_share_30d": 0.6, "messages_30d": 4,
    "last_intent": "balance", "churn_score": 0.7, "churn_label": "1",
    "churn_model_version": "3",
}  # fmt: skip


@pytest.fixture
def app(tmp_path: Path):
    settings = application_settings(tmp_path)
    features = FakeFeatures({CUSTOMER: dict(FEATURES)})
    manager = make_manager(tmp_path, {"查余额": intent("balance")})
    parts = build_parts(
        settings, models(), LocalConversation(manager), features, features, lambda _: features
    )
    graph = EmbeddedGraph(tmp_path / "g.lbdb")
    graph.ensure_schema()
    schema.upsert_nodes(graph, "Customer", [
        {"id": CUSTOMER, "tenant": "default", "population": "online_retail"}])  # fmt: skip
    schema.upsert_edges(graph, "COLLEAGUE", [
        {"a": CUSTOMER, "b": "x1", "source": "crm"},
        {"a": CUSTOMER, "b": "x2", "confidence": 0.8, "source": "model:relations"},
        {"a": "x3", "b": CUSTOMER, "confidence": 0.3, "source": "model:relations"},
    ])  # fmt: skip
    schema.upsert_edges(graph, "IN_SEGMENT", [{"a": CUSTOMER, "b": "tier:champions"}])
    parts.insight.graph = graph
    parts.insight.contacts.put("default", CUSTOMER, {"name": "王小明", "phone": "13812345678"})
    keys = {
        "supervisor": issue_test_key(settings, "sup", "default", "supervisor", clearance=3,
                                     rate_per_s=1000.0, burst=1000),
        "marketer": issue_test_key(settings, "mk", "default", "marketer", clearance=3,
                                rate_per_s=1000.0, burst=1000),
        "other": issue_test_key(settings, "x", "globex", "supervisor", clearance=3),
    }  # fmt: skip
    with TestClient(build_api(parts)) as client:
        yield client, parts, keys
    parts.stop()
    graph.close()


def test_profile_is_one_person_with_relations_segment_and_masked_contact(app) -> None:
    client, _, keys = app
    answer = client.get(
        f"/v1/customers/{CUSTOMER}/profile", headers={"X-API-Key": keys["marketer"]}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["population"] == "online_retail" and body["customer_id"] == CUSTOMER
    assert body["segment"]["rfm_tier"] == "champions" and body["segment"]["clv"] == 512.5
    assert body["scores"]["churn"]["score"] == 0.7
    status = {r["id"]: r["status"] for r in body["relations"]["colleagues"]}
    assert status == {"x1": "fact", "x2": "inferred", "x3": "suggestion"}
    assert [r["id"] for r in body["relations"]["segments"]] == ["tier:champions"]
    assert "13812345678" not in answer.text  # masked at the marketer's level
    assert body["contact"]["phone"] != "13812345678" and body["contact"]["phone"]


def test_other_tenants_and_unknown_ids_get_404(app) -> None:
    client, _, keys = app
    other = client.get(f"/v1/customers/{CUSTOMER}/profile", headers={"X-API-Key": keys["other"]})
    assert other.status_code == 404
    unknown = client.get("/v1/customers/nobody/profile", headers={"X-API-Key": keys["supervisor"]})
    assert unknown.status_code == 404 and unknown.json()["detail"]
    assert client.get(f"/v1/customers/{CUSTOMER}/profile").status_code == 401


def test_recompute_sets_rule_and_model_tags_with_audit_and_manual_tags_stay(app) -> None:
    client, parts, keys = app
    headers = {"X-API-Key": keys["supervisor"]}
    manual = client.put(f"/v1/customers/{CUSTOMER}/tags/key_account", headers=headers,
                        json={"reason": "signed framework deal"})  # fmt: skip
    assert manual.status_code == 200 and manual.json()["set_by"] == "user:sup"
    done = client.post(f"/v1/customers/{CUSTOMER}/tags/recompute", headers=headers).json()
    assert {"vip", "unhappy", "value:high", "lifecycle:active", "churn_risk:high",
            "sentiment:negative", "intent:balance"} <= set(done["added"])  # fmt: skip
    assert done["pushed"] == []  # no WeCom secrets in this test
    parts.insight.features.customers[CUSTOMER].update(high_value=0, negative_share_30d=0.0)
    again = client.post(f"/v1/customers/{CUSTOMER}/tags/recompute", headers=headers).json()
    assert {"vip", "unhappy", "value:high"} <= set(again["removed"])
    tags = client.get(f"/v1/customers/{CUSTOMER}/tags", headers=headers).json()
    current = {t["tag"]: t["set_by"] for t in tags["tags"]}
    assert current["key_account"] == "user:sup" and "vip" not in current
    assert current["lifecycle:active"] == "model:lifecycle"
    vip = [a for a in tags["audit"] if a["tag"] == "vip"]
    assert [a["action"] for a in vip] == ["remove", "add"] and vip[1]["set_by"] == "rule:vip"
    gone = client.delete(f"/v1/customers/{CUSTOMER}/tags/key_account", headers=headers)
    assert gone.status_code == 200
    missing = client.delete(f"/v1/customers/{CUSTOMER}/tags/key_account", headers=headers)
    assert missing.status_code == 404 and "no tag" in missing.json()["detail"]
    bad = client.put(f"/v1/customers/{CUSTOMER}/tags/a%20b", headers=headers, json={})
    assert bad.status_code == 422


def test_rules_are_per_tenant_and_refuse_unknown_ops(tmp_path: Path) -> None:
    engine = TagEngine(load_rules(RULES))
    telco = {"contract": "Month-to-month", "internet_service": "DSL"}
    assert [t.tag for t in engine.evaluate("default", telco)] == ["contract_flexible"]
    assert engine.evaluate("globex", telco) == []  # its own list, not the default one
    lapsed = {"rfm_tier": "at_risk", "monetary_total": 250}
    assert "winback" in [t.tag for t in engine.evaluate("acme", lapsed)]  # falls back to default
    rich = {"high_value": 1, "monetary_total": 500}
    assert "vip" in [t.tag for t in engine.evaluate("default", rich)]
    assert "vip" not in [t.tag for t in engine.evaluate("globex", rich)]
    broken = tmp_path / "rules.yaml"
    broken.write_text("default:\n  - {id: x, tag: x, all: [{field: a, op: '~=', value: 1}]}\n")
    with pytest.raises(ValueError, match="unknown op"):
        load_rules(broken)


def fake_wecom(calls: list) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        calls.append((request.url.path, dict(request.url.params), body))
        if request.url.path == "/cgi-bin/gettoken":
            return httpx.Response(200, json={"errcode": 0, "access_token": "T", "expires_in": 7200})
        if request.url.params.get("access_token") != "T":
            return httpx.Response(200, json={"errcode": 40014, "errmsg": "invalid token"})
        if request.url.path.endswith("add_corp_tag"):
            tags = [{"id": f"et{t['name']}", "name": t["name"]} for t in body["tag"]]
            return httpx.Response(200, json={"errcode": 0, "tag_group": {"tag": tags}})
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})

    return httpx.MockTransport(handle)


def test_wecom_tag_push_creates_missing_tags_then_marks_the_contact(tmp_path: Path) -> None:
    calls: list = []
    client = WeComTagClient("corp", "secret", "https://wecom.test", transport=fake_wecom(calls))

    class Identity:
        def identities(self, tenant, customer_id):
            return [("wecom", "wmEXT1"), ("web_chat", "s1")] if customer_id == "c1" else []

        def senders(self, channel, customer_id, tenant=None):  # channel-code customers
            return []

    push = wecom_pusher(client, Identity())
    assert push("t", "c1", {"added": ["vip"], "removed": []})["wecom"][0]["added"] == ["vip"]
    push("t", "c1", {"added": ["vip"], "removed": ["unknown_to_wecom"]})
    paths = [c[0] for c in calls]
    assert (
        paths.count("/cgi-bin/gettoken") == 1
        and paths.count("/cgi-bin/externalcontact/add_corp_tag") == 1
    )
    marks = [c[2] for c in calls if c[0].endswith("mark_tag")]
    assert marks[0] == {"userid": "scrm-bot", "external_userid": "wmEXT1",
                        "add_tag": ["etvip"], "remove_tag": []}  # fmt: skip
    assert push("t", "c2", {"added": ["vip"], "removed": []}) == {
        "wecom": "no WeCom contact linked"
    }
    refusing = WeComTagClient(
        "corp",
        "bad",
        "https://wecom.test",
        transport=httpx.MockTransport(
            lambda r: httpx.Response(200, json={"errcode": 40001, "errmsg": "invalid credential"})
        ),
    )
    with pytest.raises(WeComTagError, match="invalid credential"):
        refusing.mark("wmEXT1", ["vip"], [])


def test_tag_store_keeps_manual_tags_and_audits_each_change(tmp_path: Path) -> None:
    store = TagStore(tmp_path / "tags.db")
    store.set_manual("t", "c", Tag("mine", "user:u", "by hand"), add=True)
    assert store.apply("t", "c", [Tag("auto", "model:x", "why")]) == {
        "added": ["auto"],
        "removed": [],
    }
    assert store.apply("t", "c", []) == {"added": [], "removed": ["auto"]}
    assert [t["tag"] for t in store.current("t", "c")] == ["mine"]
    assert [(a["tag"], a["action"]) for a in store.audit("t", "c")] == [
        ("auto", "remove"), ("auto", "add"), ("mine", "add")]  # fmt: skip
    assert store.current("other", "c") == []
    store.close()
