"""The marketing bus consumer on the embedded bus: churn crossing, low CSAT after a handoff and
no purchase in 30 days start event-triggered campaigns; an event processed twice sends once;
nothing is lost across a restart of the consumer or of the gateway's drain."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from crm.marketing.audience import CustomerRecord
from crm.marketing.feed import MarketingFeed
from crm.marketing.spec import load_spec
from crm.streams.lag import CONSUMERS
from crm.streams.marketing import MarketingTriggers
from crm.streams.recorder import processors
from crm.streams.runner import StreamRunner
from events.embedded import EmbeddedBus
from events.schemas import CampaignEvent, FeedbackGiven, Handoff, PredictionMade
from settings.events import EventSettings
from tests.unit.test_marketing_campaigns import NOON, world

SOON = NOON - timedelta(minutes=5)


def spec(name: str, trigger: str) -> str:
    return f"""
name: {name}
purpose: promotions
audience: {{all: [{{kind: consent, name: promotions}}]}}
channels: [web_chat]
templates: {{web_chat: {{text: "会员专享"}}}}
caps: {{per_day: 5, per_week: 10}}
trigger: {trigger}
"""


CHURN = spec("churn-save", '{events: ["signal:churn_crossed"], churn_threshold: 0.7}')
CSAT = spec("csat-recover", '{events: ["signal:low_csat_handoff"], csat_at_most: 2}')
LAPSED = spec("winback-30d", '{events: ["signal:no_purchase"], no_purchase_days: 30}')


def person(cid: str, **fields) -> CustomerRecord:
    return CustomerRecord(cid, fields=fields, consent={"promotions": True})


def churn(cid: str, score: float, minutes: int = 5) -> PredictionMade:
    return PredictionMade(tenant="acme", customer_id=cid, model="churn", confidence=score,
                          at=NOON - timedelta(minutes=minutes))  # fmt: skip


def consume(bus: EmbeddedBus, derived: Path) -> int:
    async def go() -> int:
        runner = StreamRunner(bus, derived, [MarketingTriggers()], workers=2, batch=3)
        try:
            return await runner.run_until_idle(timeout_s=0.01)
        finally:
            await runner.close()

    return asyncio.run(go())


def campaigns(marketing, *texts: str) -> list[str]:
    ids = []
    for text in texts:
        cid = marketing.create("acme", load_spec(text))["id"]
        asyncio.run(marketing.launch("acme", cid))
        ids.append(cid)
    return ids


def sent_to(sender) -> list[str]:
    return [customer for _, customer, _ in sender.sent]


def test_the_consumer_is_registered_with_the_others() -> None:
    names = [p.name for p in processors(EventSettings())]
    assert "marketing_triggers" in names and set(names) == set(CONSUMERS)


def test_bus_signals_start_triggered_campaigns_once_and_survive_restarts(tmp_path: Path) -> None:
    bus, derived = EmbeddedBus(tmp_path / "bus.db", 4), tmp_path / "derived.db"
    people = [person(f"c{i}") for i in range(1, 8)]
    marketing, senders, published, _ = world(people)
    churn_id, csat_id = campaigns(marketing, CHURN, CSAT)
    web = senders["web_chat"]
    feed = MarketingFeed(lambda: marketing, derived, clock=lambda: NOON)
    resolved = dict(tenant="acme", type="handoff.resolved", ticket_id="T1", at=SOON)
    events = [
        churn("c1", 0.5, 9), churn("c1", 0.8, 8), churn("c1", 0.95, 7),  # crosses once, at 0.8
        churn("c2", 0.6),  # under the threshold
        Handoff(customer_id="c3", **resolved),
        FeedbackGiven(tenant="acme", customer_id="c3", kind="csat", csat=1, at=NOON),
        FeedbackGiven(tenant="acme", customer_id="c4", kind="csat", csat=1, at=NOON),  # no handoff
        Handoff(customer_id="c5", **resolved),
        FeedbackGiven(tenant="acme", customer_id="c5", kind="csat", csat=5, at=NOON),  # happy
        PredictionMade(tenant="acme", customer_id="c6", model="intent", confidence=0.99, at=SOON),
    ]  # fmt: skip
    asyncio.run(bus.publish(events))
    assert consume(bus, derived) == len(events)
    counts = asyncio.run(feed.drain())
    assert sorted(sent_to(web)) == ["c1", "c3"]
    assert marketing.store.get("acme", churn_id)["members"] == ["c1"]
    assert marketing.store.get("acme", csat_id)["members"] == ["c3"]
    assert counts["joined"] == 2 and asyncio.run(feed.drain()) == {}  # all handed over

    # Processed twice: the same events again (the bus drops the ids), the consumer's
    # checkpoint lost (everything redelivered), the drain's marks lost: still sent once.
    asyncio.run(bus.publish(events))
    feed.db.execute("DELETE FROM checkpoints WHERE consumer = 'marketing_triggers'")
    consume(bus, derived)
    feed.db.execute("UPDATE marketing_outbox SET done_at = NULL, lease_until = 0")
    asyncio.run(feed.drain())
    assert sorted(sent_to(web)) == ["c1", "c3"]

    # Published while the consumer and the drain are down: nothing lost after the restart.
    feed.close()
    asyncio.run(bus.publish([churn("c2", 0.75, 1)]))
    assert consume(bus, derived) == 1
    again = MarketingFeed(lambda: marketing, derived, clock=lambda: NOON)
    assert asyncio.run(again.drain()) == {"joined": 1, "none": 1}  # the signal, the raw event
    assert sorted(sent_to(web)) == ["c1", "c2", "c3"]
    assert [e.customer_id for e in published if e.type == "campaign.sent"] == sent_to(web)
    again.close()


def test_a_drain_that_fails_keeps_the_row_and_old_history_starts_nothing(tmp_path: Path) -> None:
    bus, derived = EmbeddedBus(tmp_path / "bus.db", 2), tmp_path / "derived.db"
    marketing, senders, _, _ = world([person("c1"), person("c2")])
    campaigns(marketing, CHURN)
    asyncio.run(bus.publish([churn("c1", 0.9), churn("c2", 0.9, minutes=3 * 24 * 60)]))
    consume(bus, derived)
    broken = {"on": True}
    real = marketing.on_event

    async def flaky(event):
        if broken["on"]:
            raise RuntimeError("campaign store away")
        return await real(event)

    marketing.on_event = flaky
    feed = MarketingFeed(lambda: marketing, derived, clock=lambda: NOON)
    # Each prediction is two rows (the raw event, the signal); c2's are 3 days old.
    assert asyncio.run(feed.drain()) == {"error": 2, "stale": 2}
    broken["on"] = False
    assert asyncio.run(feed.drain()) == {"joined": 1, "none": 1}
    assert sent_to(senders["web_chat"]) == ["c1"]
    rows = feed.db.execute("SELECT customer_id, type, outcome, attempts FROM marketing_outbox")
    assert sorted(rows) == [
        ("c1", "prediction.made", "none", 2), ("c1", "signal:churn_crossed", "joined", 2),
        ("c2", "prediction.made", "stale", 1), ("c2", "signal:churn_crossed", "stale", 1),
    ]  # fmt: skip
    feed.close()


def test_no_purchase_in_30_days_from_the_profile_and_the_bus(tmp_path: Path) -> None:
    bus, derived = EmbeddedBus(tmp_path / "bus.db", 2), tmp_path / "derived.db"
    people = [
        person("c1", recency_days=45),  # lapsed
        person("c2", recency_days=10),  # bought recently
        person("c3", recency_days=45),  # the profile is old news: converted yesterday
        person("c4"),  # unknown: never assumed lapsed
        person("c5", recency_days=31),  # just lapsed
    ]
    marketing, senders, _, _ = world(people)
    campaigns(marketing, LAPSED)
    bought = CampaignEvent(type="campaign.converted", tenant="acme", customer_id="c3",
                           campaign_id="x", at=NOON - timedelta(days=1))  # fmt: skip
    asyncio.run(bus.publish([bought]))
    consume(bus, derived)
    feed = MarketingFeed(lambda: marketing, derived, clock=lambda: NOON)
    assert asyncio.run(feed.lapsed()) == 2
    assert sorted(sent_to(senders["web_chat"])) == ["c1", "c5"]
    assert asyncio.run(feed.lapsed()) == 0  # the next tick: already members, nothing new
    assert len(senders["web_chat"].sent) == 2
    feed.close()


def test_a_campaign_threshold_decides_what_crossing_means() -> None:
    from crm.streams.marketing import Signal

    trigger = load_spec(CHURN).trigger
    crossing = Signal("signal:churn_crossed", "acme", "c1", NOON, "e1", {"score": 0.8,
                      "previous": 0.5})  # fmt: skip
    above = Signal("signal:churn_crossed", "acme", "c1", NOON, "e2", {"score": 0.9,
                   "previous": 0.8})  # fmt: skip
    first = Signal("signal:churn_crossed", "acme", "c1", NOON, "e3", {"score": 0.7,
                   "previous": None})  # fmt: skip
    assert trigger.fires(crossing) and not trigger.fires(above) and trigger.fires(first)
    lapsed = Signal("signal:no_purchase", "acme", "c1", NOON, "e4", {"days": 29.5})
    assert not load_spec(LAPSED).trigger.fires(lapsed)


def test_a_backlog_is_drained_in_one_call_batch_by_batch(tmp_path: Path) -> None:
    bus, derived = EmbeddedBus(tmp_path / "bus.db", 2), tmp_path / "derived.db"
    people = [person(f"c{i}") for i in range(5)]
    marketing, senders, _, _ = world(people)
    campaigns(marketing, CHURN)
    asyncio.run(bus.publish([churn(p.customer_id, 0.9) for p in people]))
    consume(bus, derived)
    feed = MarketingFeed(lambda: marketing, derived, clock=lambda: NOON, batch=3)
    assert asyncio.run(feed.drain()) == {"joined": 5, "none": 5}  # 10 rows, 4 batches
    assert len(senders["web_chat"].sent) == 5
    feed.close()
