"""Campaigns end to end over in-memory fakes: rules hold at launch, idempotent sends, pause and
resume, arms and holdout, journeys with waits and branches, events on the bus, rate limits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from crm.marketing import rules
from crm.marketing.arms import HOLDOUT, local_assign
from crm.marketing.audience import CustomerRecord, InMemorySource
from crm.marketing.campaigns import Marketing, Pacer, StateError
from crm.marketing.spec import CampaignSpec, load_spec
from crm.marketing.store import CampaignStore
from events.schemas import CampaignEvent

NOON = datetime(2026, 12, 5, 4, 0, tzinfo=UTC)  # 12:00 Asia/Shanghai
SPEC = """
name: winback
purpose: promotions
audience: {all: [{kind: segment, name: at_risk}]}
channels: [wecom, web_chat]
templates:
  wecom: {text: "{surname}先生/女士，{rfm_tier}专享", plain: "会员专享"}
  web_chat: {text: "会员专享"}
caps: {per_day: 1, per_week: 3}
"""


def customer(cid: str, **consent: bool) -> CustomerRecord:
    consent = {"promotions": True, **consent}
    return CustomerRecord(
        cid,
        fields={"name": "王小明", "phone": "13812345678", "rfm_tier": "at_risk"},
        segments=frozenset({"at_risk"}),
        consent=consent,
    )


class Clock:
    def __init__(self, now: datetime = NOON):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FakeSender:
    def __init__(self, reachable: set[str] | None = None, fail: set[str] | None = None):
        self.sent: list[tuple[str, str, str]] = []
        self.reachable, self.fail = reachable, fail or set()

    async def __call__(self, tenant: str, customer_id: str, text: str) -> bool:
        if self.reachable is not None and customer_id not in self.reachable:
            return False
        if customer_id in self.fail:
            raise RuntimeError("vendor refused")
        self.sent.append((tenant, customer_id, text))
        return True


async def no_sleep(_: float) -> None:
    return None


def world(records: list[CustomerRecord], **kw):
    store, clock, bus = CampaignStore(), Clock(kw.pop("now", NOON)), []
    senders = {"wecom": FakeSender(kw.pop("wecom_reach", None)), "web_chat": FakeSender()}
    marketing = Marketing(
        store,
        InMemorySource({"acme": records}),
        senders,
        bus.append,
        clock=clock,
        sleep=no_sleep,
        **kw,
    )
    return marketing, senders, bus, clock


def launch(marketing: Marketing, spec: str = SPEC, tenant: str = "acme") -> tuple[str, dict]:
    cid = marketing.create(tenant, load_spec(spec))["id"]
    return cid, asyncio.run(marketing.launch(tenant, cid))


def test_launch_sends_once_per_customer_and_publishes_events() -> None:
    marketing, senders, bus, _ = world([customer("c1"), customer("c2")])
    cid, report = launch(marketing)
    assert report["counts"] == {"sent": 2}
    texts = [text for _, _, text in senders["wecom"].sent]
    assert texts[0].startswith("王先生/女士，at_risk专享") and rules.REFUSAL_LINE in texts[0]
    assert "13812345678" not in "".join(texts) and "小明" not in "".join(texts)
    assert [type(e) for e in bus] == [CampaignEvent, CampaignEvent]
    assert {(e.type, e.campaign_id, e.arm, e.step) for e in bus} == {
        ("campaign.sent", cid, "control", "main")
    }
    # replay of launch (and a tick) does not double-send
    again = asyncio.run(marketing.launch("acme", cid))
    asyncio.run(marketing.tick("acme"))
    assert again["counts"] == {"already": 2} and len(senders["wecom"].sent) == 2 and len(bus) == 2


def test_opt_out_then_launch_sends_nothing() -> None:
    marketing, senders, bus, _ = world([customer("c1"), customer("c2")])
    for cid in ("c1", "c2"):
        rules.handle_inbound_text("TD", "acme", cid, "web_chat", marketing.store, bus.append)
    _, report = launch(marketing)
    assert report["counts"] == {"skipped:opt_out": 2}
    assert senders["wecom"].sent == senders["web_chat"].sent == []
    assert [e.type for e in bus] == ["consent.changed", "consent.changed"]


def test_no_consent_for_the_purpose_excluded() -> None:
    people = [
        customer("c1"),
        CustomerRecord("c2", segments=frozenset({"at_risk"}), consent={"newsletter": True}),
    ]
    marketing, senders, _, _ = world(people)
    _, report = launch(marketing)
    assert report["counts"] == {"sent": 1, "skipped:purpose": 1}
    assert [c for _, c, _ in senders["wecom"].sent] == ["c1"]


def test_cap_reached_is_skipped_with_reason_across_campaigns() -> None:
    marketing, senders, _, clock = world([customer("c1")])
    launch(marketing)
    cid, report = launch(marketing, SPEC.replace("winback", "second"))
    assert report["counts"] == {"skipped:cap_day": 1}
    dry = marketing.dry_run("acme", cid)
    assert dry["customers"][0]["verdict"] == "cap_day" and "cap 1" in dry["customers"][0]["reason"]
    clock.now += timedelta(days=1)  # the next day the same campaign's run sends it
    assert asyncio.run(marketing.launch("acme", cid))["counts"] == {"sent": 1}
    assert len(senders["wecom"].sent) == 2


def test_quiet_hours_defer_then_send() -> None:
    marketing, senders, _, clock = world(
        [customer("c1")], now=datetime(2026, 12, 5, 14, tzinfo=UTC)
    )
    cid, report = launch(marketing)  # 22:00 in Shanghai
    assert report["counts"] == {"skipped:quiet_hours": 1} and senders["wecom"].sent == []
    clock.now = datetime(2026, 12, 6, 0, 30, tzinfo=UTC)  # 08:30 Shanghai
    assert asyncio.run(marketing.tick_all()) == 1
    assert marketing.store.get("acme", cid)["last_run"]["counts"] == {"sent": 1}


def test_open_conversation_suppressed() -> None:
    marketing, senders, _, _ = world(
        [customer("c1"), customer("c2")], open_conversation=lambda t, c: c == "c2"
    )
    _, report = launch(marketing)
    assert report["counts"] == {"sent": 1, "skipped:open_conversation": 1}


def test_refused_personalisation_gets_the_plain_text() -> None:
    marketing, senders, _, _ = world([customer("c1", personalisation=False)])
    launch(marketing)
    ((_, _, text),) = senders["wecom"].sent
    assert text.startswith("会员专享") and "王" not in text and "非个性化" not in text


def test_unreachable_on_wecom_falls_back_to_web_chat() -> None:
    marketing, senders, bus, _ = world([customer("c1"), customer("c2")], wecom_reach={"c1"})
    launch(marketing)
    assert [c for _, c, _ in senders["wecom"].sent] == ["c1"]
    assert [c for _, c, _ in senders["web_chat"].sent] == ["c2"]
    assert {e.channel for e in bus} == {"wecom", "web_chat"}


def test_a_failed_send_is_recorded_and_not_retried() -> None:
    marketing, senders, _, _ = world([customer("c1")])
    senders["wecom"].fail = {"c1"}
    cid, report = launch(marketing)
    assert report["counts"] == {"failed": 1}
    asyncio.run(marketing.launch("acme", cid))
    assert marketing.store.sends(cid)[0]["status"] == "failed" and senders["web_chat"].sent == []


def test_pause_stops_sending_and_resume_continues() -> None:
    people = [customer(f"c{i}") for i in range(6)]
    marketing, senders, _, _ = world(people)
    sender = senders["wecom"]
    cid = marketing.create("acme", load_spec(SPEC))["id"]

    async def pausing(tenant: str, customer_id: str, text: str) -> bool:
        await FakeSender.__call__(sender, tenant, customer_id, text)
        if len(sender.sent) == 2:
            marketing.pause(tenant, cid)
        return True

    marketing.senders["wecom"] = pausing
    report = asyncio.run(marketing.launch("acme", cid))
    assert report["counts"]["sent"] == 2 and report["counts"]["paused"] == 1
    assert marketing.store.get("acme", cid)["state"] == "paused"
    with pytest.raises(StateError):
        asyncio.run(marketing.launch("acme", cid))
    with pytest.raises(StateError):
        marketing.pause("acme", cid)
    marketing.senders["wecom"] = sender
    report = asyncio.run(marketing.resume("acme", cid))
    assert report["counts"] == {"already": 2, "sent": 4}
    assert sorted(c for _, c, _ in sender.sent) == sorted(r.customer_id for r in people)


def test_audience_is_frozen_at_launch() -> None:
    people = [customer("c1")]
    marketing, senders, _, _ = world(people)
    cid, _ = launch(marketing)
    people.append(customer("c2"))
    asyncio.run(marketing.launch("acme", cid))
    assert [c for _, c, _ in senders["wecom"].sent] == ["c1"]
    assert marketing.store.get("acme", cid)["members"] == ["c1"]


def test_arms_and_holdout_are_deterministic() -> None:
    arms = {"control": 1.0, "coupon": 1.0}
    picks = [local_assign(f"u{i}", "exp", arms, "salt", 0.2) for i in range(4000)]
    assert picks == [local_assign(f"u{i}", "exp", arms, "salt", 0.2) for i in range(4000)]
    share = {arm: picks.count(arm) / len(picks) for arm in (HOLDOUT, "control", "coupon")}
    assert abs(share[HOLDOUT] - 0.2) < 0.03 and abs(share["control"] - 0.4) < 0.03
    assert picks != [local_assign(f"u{i}", "exp", arms, "other", 0.2) for i in range(4000)]


def test_holdout_members_are_recorded_not_sent() -> None:
    people = [customer(f"c{i}") for i in range(40)]
    marketing, senders, bus, _ = world(people)
    spec = SPEC + "holdout: 0.5\narms: [{name: a}, {name: b, templates: {wecom: {text: B}}}]\n"
    cid, report = launch(marketing, spec)
    held = [s for s in marketing.store.sends(cid) if s["arm"] == HOLDOUT]
    assert report["counts"][HOLDOUT] == len(held) > 5 and report["counts"]["sent"] == 40 - len(held)
    assert {e.arm for e in bus} == {"a", "b"} and len(senders["wecom"].sent) == 40 - len(held)
    assert all(
        text.startswith("B\n")
        for _, c, text in senders["wecom"].sent
        if any(e.customer_id == c and e.arm == "b" for e in bus)
    )


def test_journey_waits_and_branches_on_replies() -> None:
    spec = SPEC + (
        "steps: [{name: first}, {name: nudge, wait_s: 3600, when: not_replied,"
        " templates: {wecom: {text: 还在吗}}}]\n"
    )
    marketing, senders, bus, clock = world([customer("c1"), customer("c2")])
    cid, report = launch(marketing, spec)
    assert report["counts"] == {"sent": 2, "waiting": 2}
    marketing.record_outcome("acme", cid, "c1", "replied", channel="wecom")
    clock.now += timedelta(minutes=30)
    assert asyncio.run(marketing.tick("acme"))[0]["counts"] == {"already": 2, "waiting": 2}
    clock.now += timedelta(hours=1)
    # c1 replied: no nudge; c2's nudge is due but the daily cap holds it; the next day it goes
    counts = asyncio.run(marketing.tick("acme"))[0]["counts"]
    assert counts == {"already": 2, "branch": 1, "skipped:cap_day": 1}
    clock.now += timedelta(days=1)
    assert asyncio.run(marketing.tick("acme"))[0]["counts"]["sent"] == 1
    assert senders["wecom"].sent[-1][1] == "c2" and senders["wecom"].sent[-1][2].startswith(
        "还在吗"
    )
    assert [e.type for e in bus].count("campaign.replied") == 1


def test_pacer_spaces_sends_by_the_channel_rate() -> None:
    now, slept = [0.0], []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(10.0, sleep, lambda: now[0])

    async def five() -> None:
        for _ in range(5):
            await pacer.wait()

    asyncio.run(five())
    assert sum(slept) == pytest.approx(0.4) and len(slept) == 4


@pytest.mark.parametrize(
    "change",
    [
        ("{surname}先生/女士，{rfm_tier}专享", "{phone}"),  # a non-whitelisted field
        (', plain: "会员专享"', ""),  # personalised without a plain version
        ("channels: [wecom, web_chat]", "channels: [wecom, sms]"),
        ("channels: [wecom, web_chat]", "channels: [wecom, dingtalk]"),  # no template for it
        ("purpose: promotions", "purpose: 'promo; drop'"),
    ],
)
def test_bad_specs_are_refused(change: tuple[str, str]) -> None:
    with pytest.raises(ValidationError):
        load_spec(SPEC.replace(*change))


def test_other_tenant_cannot_see_or_launch() -> None:
    marketing, senders, _, _ = world([customer("c1")])
    cid = marketing.create("acme", CampaignSpec.model_validate(load_spec(SPEC).model_dump()))["id"]
    with pytest.raises(KeyError):
        asyncio.run(marketing.launch("globex", cid))
    assert marketing.store.list("globex") == [] and senders["wecom"].sent == []


def test_event_triggered_campaign_joins_matching_customers_once() -> None:
    people = [customer("c1"), customer("c2")]
    hot = CustomerRecord(
        "c1",
        fields={"rfm_tier": "at_risk"},
        scores={"churn": 0.9},
        segments=frozenset({"at_risk"}),
        consent={"promotions": True},
    )
    people[0] = hot
    spec = SPEC.replace(
        "audience: {all: [{kind: segment, name: at_risk}]}",
        "audience: {all: [{kind: score, name: churn, op: ge, value: 0.8}]}\n"
        "trigger: {events: [prediction.made]}",
    ).replace("{surname}先生/女士，{rfm_tier}专享", "{rfm_tier}专享")
    marketing, senders, bus, _ = world(people)
    cid, report = launch(marketing, spec)
    assert report["counts"] == {} and senders["wecom"].sent == []  # nobody until an event

    class Event:
        def __init__(self, cid: str, kind: str = "prediction.made"):
            self.tenant, self.customer_id, self.type = "acme", cid, kind

    assert asyncio.run(marketing.on_event(Event("c2"))) == []  # churn unknown: no match
    assert asyncio.run(marketing.on_event(Event("c1", "message.received"))) == []
    assert asyncio.run(marketing.on_event(Event("c1"))) == [cid]
    asyncio.run(marketing.on_event(Event("c1")))  # a second event: no second message
    assert [c for _, c, _ in senders["wecom"].sent] == ["c1"]
    assert marketing.store.get("acme", cid)["members"] == ["c1"]
    with pytest.raises(ValidationError):
        load_spec(spec.replace("prediction.made", "no.such.event"))


def test_the_example_spec_loads() -> None:
    path = Path(__file__).resolve().parents[2] / "crm/marketing/examples/winback.yaml"
    spec = load_spec(path.read_text(encoding="utf-8"))
    assert spec.arm_weights() == {"control": 1, "coupon": 1} and spec.holdout == 0.1
    assert spec.audience.top is not None and spec.steps[1].when == "not_replied"


def test_the_local_adapter_assigns_as_the_experiment_engine_does() -> None:
    engine = pytest.importorskip("experiments.assignment")  # merged separately (issue 22)
    arms = {"a": 1.0, "b": 2.0}
    for i in range(2000):
        assert engine.assign(f"u{i}", "e", arms, "s", 0.1) == local_assign(
            f"u{i}", "e", arms, "s", 0.1
        )


def test_a_message_after_a_send_is_the_campaigns_reply_once() -> None:
    from events.schemas import MessageReceived

    marketing, _, bus, _ = world([customer("c1"), customer("c2")])
    cid, _ = launch(marketing)
    said = MessageReceived(tenant="acme", customer_id="c1", channel="wecom", text="好的")
    asyncio.run(marketing.on_event(said))
    asyncio.run(marketing.on_event(said))
    other = MessageReceived(tenant="globex", customer_id="c2", channel="wecom", text="hi")
    asyncio.run(marketing.on_event(other))
    replies = [e for e in bus if e.type == "campaign.replied"]
    assert [(e.customer_id, e.campaign_id, e.channel) for e in replies] == [("c1", cid, "wecom")]


def test_campaign_ids_survive_response_masking() -> None:
    """A hex id can hold a Luhn-valid digit run and come back as `44c[CARD]...` (seen)."""
    from privacy.ids import opaque_id as object_id
    from privacy.masking import mask_payload

    ids = [object_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(mask_payload({"campaign": i}, "standard") == {"campaign": i} for i in ids)
    assert mask_payload({"campaign": "44c4111111111111111"}, "standard") != {
        "campaign": "44c4111111111111111"
    }  # the old shape could be masked
