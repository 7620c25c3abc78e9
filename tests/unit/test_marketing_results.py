"""Campaign results: simulated campaigns whose truth is known go through the real launch,
outcomes and the experiment engine; a broken split concludes nothing; tenants stay apart."""

from __future__ import annotations

import asyncio
import functools
import random

from crm.marketing.arms import engine_assign
from crm.marketing.audience import CustomerRecord, InMemorySource
from crm.marketing.campaigns import Marketing
from crm.marketing.results import analyse_campaign, events, exposures
from crm.marketing.spec import CampaignSpec
from crm.marketing.store import CampaignStore
from tests.unit.test_marketing_campaigns import NOON, FakeSender, no_sleep
from tests.unit.test_marketing_routes import SPEC as ROUTE_SPEC
from tests.unit.test_marketing_routes import app  # noqa: F401 (the fixture)

assign = engine_assign()
SPEC = CampaignSpec.model_validate(
    {
        "name": "ab",
        "purpose": "promotions",
        "audience": {"all": [{"kind": "segment", "name": "all"}]},
        "channels": ["web_chat"],
        "templates": {"web_chat": {"text": "会员专享"}},
        "arms": [{"name": "control"}, {"name": "offer"}],
        "holdout": 0.1,
    }
)


@functools.cache  # each simulated campaign once per session (tests only read it)
# The campaign id is random (uuid4): the split is salted with a constant instead, so each
# test sees one fixed split and its assertions do not depend on the run.
def simulated(
    n: int, control: float, offer: float, holdout: float, seed: int = 0
) -> tuple[Marketing, str]:
    """n customers in a launched campaign; each converts with its arm's true rate."""
    rates = {"control": control, "offer": offer, "holdout": holdout}
    records = [
        CustomerRecord(f"c{i}", segments=frozenset({"all"}), consent={"promotions": True})
        for i in range(n)
    ]
    marketing = Marketing(
        CampaignStore(),
        InMemorySource({"acme": records}),
        {"web_chat": FakeSender()},
        lambda _: None,
        clock=lambda: NOON,
        sleep=no_sleep,
        assign=lambda unit, _exp, arms, _salt, holdout: assign(unit, "ab", arms, "t", holdout),
    )
    cid = marketing.create("acme", SPEC)["id"]
    asyncio.run(marketing.launch("acme", cid))
    draw = random.Random(seed)
    arm_of = {s["customer_id"]: s["arm"] for s in marketing.store.sends(cid)}
    for customer, arm in arm_of.items():
        if draw.random() < rates[arm]:
            marketing.record_outcome("acme", cid, customer, "converted", value=50.0)
        if arm != "holdout" and draw.random() < 0.2:
            marketing.record_outcome("acme", cid, customer, "replied", channel="web_chat")
    return marketing, cid


def test_a_true_lift_is_found_with_an_interval_excluding_zero() -> None:
    marketing, cid = simulated(3000, 0.05, 0.12, 0.03)
    out = marketing.results("acme", cid)
    offer = out["summary"]["conversion"]["offer"]
    assert out["summary"]["srm"]["mismatch"] is False
    assert 0.04 < offer["lift"] < 0.10 and offer["interval"][0] > 0
    assert offer["p_beat_control"] > 0.99 and offer["always_valid_p"] < 0.05
    assert out["summary"]["decision"]["action"] == "ship"
    assert out["summary"]["decision"]["arm"] == "offer"
    units = out["summary"]["units"]
    assert sum(units.values()) == 3000 and 200 < units["holdout"] < 400
    assert out["sent"].get("holdout", 0) == 0 and out["sent"]["offer"] == units["offer"]
    against = out["vs_holdout"]  # messaging itself: both arms beat the unmessaged holdout
    assert set(against) == {"control", "offer"} and against["offer"]["interval"][0] > 0
    metrics = out["result"]["metrics"]
    assert metrics["holdout"]["reply_rate"]["eligible"] == 0  # never sent, no reply rate
    assert 0.15 < metrics["offer"]["reply_rate"]["value"] < 0.25
    assert metrics["offer"]["revenue_per_customer"]["value"] > 0


def test_an_a_a_campaign_ships_nothing() -> None:
    marketing, cid = simulated(3000, 0.08, 0.08, 0.08, seed=1)
    out = marketing.results("acme", cid)
    assert out["summary"]["srm"]["mismatch"] is False
    assert out["summary"]["decision"]["action"] != "ship"


def test_a_broken_split_trips_srm_and_concludes_nothing() -> None:
    marketing, cid = simulated(3000, 0.05, 0.12, 0.03)
    found, spec = marketing.campaign("acme", cid)
    exposed = exposures(marketing, "acme", found, spec)
    offer = [e for e in exposed if e["arm"] == "offer"]
    broken = [e for e in exposed if e not in offer[: len(offer) // 2]]
    rows = events(marketing, "acme", cid, [e["unit_id"] for e in exposed])
    result = analyse_campaign(broken, rows, spec)
    assert result["srm"]["mismatch"] is True
    assert result["comparisons"] == {} and result["decision"]["action"] == "stop"
    assert result["decision"]["arm"] is None


def test_opted_out_customers_count_in_their_arm_and_feed_the_guardrail() -> None:
    marketing, cid = simulated(600, 0.05, 0.05, 0.05, seed=2)
    marketing.store.record("acme", "c1", NOON, "keyword:web_chat")
    out = marketing.results("acme", cid)
    assert sum(out["summary"]["units"].values()) == 600
    assert [g["metric"] for g in out["result"]["guardrails"]["offer"]] == ["opt_out"]


def test_results_route_is_the_tenants_marketers_only(app) -> None:  # noqa: F811
    client, keys, _, _, _ = app
    cid = client.post("/v1/marketing/campaigns", json=ROUTE_SPEC, headers=keys["marketer"])
    cid = cid.json()["id"]
    client.post(f"/v1/marketing/campaigns/{cid}/launch", headers=keys["marketer"])
    mine = client.get(f"/v1/marketing/campaigns/{cid}/results", headers=keys["marketer"])
    assert mine.status_code == 200, mine.text
    assert mine.json()["summary"]["units"]["control"] == 4
    theirs = client.get(f"/v1/marketing/campaigns/{cid}/results", headers=keys["other"])
    assert theirs.status_code == 404
    missing = client.get("/v1/marketing/campaigns/nope/results", headers=keys["marketer"])
    assert missing.status_code == 404
    assert (
        client.get(f"/v1/marketing/campaigns/{cid}/results", headers=keys["supervisor"])
    ).status_code == 403


def test_a_draft_campaign_has_no_units_and_decides_nothing() -> None:
    marketing = Marketing(CampaignStore(), InMemorySource({"acme": []}), {}, lambda _: None)
    cid = marketing.create("acme", SPEC)["id"]
    out = marketing.results("acme", cid)["summary"]
    assert out["units"] == {"control": 0, "offer": 0, "holdout": 0}
    assert out["decision"]["action"] == "continue" and out["conversion"] == {}
