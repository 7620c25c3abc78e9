"""`scrm eval marketing`: one A/B campaign end to end on a seeded synthetic population, next
to the Hillstrom uplift figures.

The population is synthetic (no customer data leaves anywhere): segments, tags, consent,
earlier opt-outs, customers already messaged today (the daily cap), customers in an open
service conversation, and reachability on WeCom and web chat. The campaign goes through the
real `Marketing` service (audience preview, create, launch with every protective rule,
recording fake senders in place of the vendors), then outcomes are drawn from the stated
response model below and recorded with `record_outcome`, and `Marketing.results` compares
the arms with the experiment engine (lift with interval, SRM, always-valid p, decision).

Response model (per customer, independent draws from the seeded generator):
    base conversion: at_risk 4 %, loyal 8 %;  a customer who was sent the message adds
    +2 points (control text) or +2 + TRUE_LIFT points (offer text); holdout and customers a
    rule skipped keep the base rate. Replies (sent only): 10 % control, 14 % offer.
    Revenue of a conversion: 120 + an exponential with mean 80.
The true intention-to-treat lift of offer over control is TRUE_LIFT times the share of the
arm that was actually sent (the rules and reachability skip the others).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crm.marketing.arms import engine_assign
from crm.marketing.audience import Audience, CustomerRecord, InMemorySource
from crm.marketing.campaigns import Marketing
from crm.marketing.spec import CampaignSpec
from crm.marketing.store import CampaignStore

TENANT = "synthetic"
NOON = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)  # 12:00 Asia/Shanghai: outside quiet hours
TRUE_LIFT = 0.04
BASE = {"at_risk": 0.04, "loyal": 0.08, "new": 0.06}
SENT_EFFECT = 0.02
REPLY = {"control": 0.10, "offer": 0.14}
RULES = ("opt_out", "consent", "purpose", "open_conversation", "cap_day", "cap_week",
         "quiet_hours", "wecom_limit", "unreachable")  # fmt: skip
HILLSTROM = Path("bench/results/uplift_hillstrom.json")
RESULTS = Path("bench/results/marketing_eval.json")
SPEC = {
    "name": "synthetic-winback",
    "purpose": "promotions",
    "audience": {"any": [{"kind": "segment", "name": "at_risk"},
                         {"kind": "segment", "name": "loyal"}]},
    "channels": ["wecom", "web_chat"],
    "templates": {
        "wecom": {"text": "{surname}先生/女士，会员回馈", "plain": "会员回馈"},
        "web_chat": {"text": "会员回馈"},
    },
    "arms": [
        {"name": "control", "weight": 1},
        {"name": "offer", "weight": 1,
         "templates": {"wecom": {"text": "会员回馈：满200减30"},
                       "web_chat": {"text": "满200减30"}}},
    ],
    "holdout": 0.1,
}  # fmt: skip


class RecordingSender:
    """A channel sender (tenant, customer, text) -> reached, recording what it was given."""

    def __init__(self, reachable: set[str]):
        self.reachable, self.sent = reachable, []

    async def __call__(self, tenant: str, customer_id: str, text: str) -> bool:
        if customer_id not in self.reachable:
            return False
        self.sent.append((tenant, customer_id, text))
        return True


async def no_sleep(_: float) -> None:
    return None


def population(n: int, rng: random.Random) -> dict[str, Any]:
    """Synthetic customers, plus who opted out before, was messaged today, is in an open
    conversation, and is reachable on which channel."""
    records, traits = [], {"opted_out": set(), "messaged_today": set(), "in_conversation": set()}
    reach: dict[str, set[str]] = {"wecom": set(), "web_chat": set()}
    for i in range(n):
        cid = f"syn-{i:05d}"
        segment = rng.choices(list(BASE), weights=[4, 4, 2])[0]
        consent = {"promotions": rng.random() < 0.88, "personalisation": rng.random() < 0.9}
        if rng.random() < 0.03:
            consent["marketing"] = False
        tags = frozenset({"vip"}) if rng.random() < 0.1 else frozenset()
        records.append(CustomerRecord(cid, {"name": "王小明"}, frozenset({segment}), tags,
                                      consent=consent))  # fmt: skip
        for trait, share in (("opted_out", 0.05), ("messaged_today", 0.04),
                             ("in_conversation", 0.02)):  # fmt: skip
            if rng.random() < share:
                traits[trait].add(cid)
        where = rng.random()
        if where < 0.6:
            reach["wecom"].add(cid)
        if where >= 0.55 and where < 0.96:
            reach["web_chat"].add(cid)
    return {"records": records, "reach": reach, **traits}


def world(
    people: dict[str, Any], seed: int = 0
) -> tuple[Marketing, dict[str, RecordingSender], list]:
    """The real service over an in-memory store with the population's history in it. The
    campaign id is random (uuid4), so the arms are salted with the seed instead: one seed,
    one split, every run."""
    engine = engine_assign()

    def assign(unit: str, _experiment: str, arms: dict, _salt: str, holdout: float) -> str:
        return engine(unit, SPEC["name"], arms, f"seed-{seed}", holdout)

    store, bus = CampaignStore(), []
    for cid in people["opted_out"]:
        store.record(TENANT, cid, NOON - timedelta(days=20), "keyword:wecom")
    for cid in people["messaged_today"]:  # an earlier campaign this morning: the daily cap
        store.claim(TENANT, "earlier", "main", cid, "control", "web_chat", "sent",
                    NOON - timedelta(hours=2))  # fmt: skip
    senders = {c: RecordingSender(people["reach"][c]) for c in ("wecom", "web_chat")}
    busy = people["in_conversation"]
    marketing = Marketing(
        store, InMemorySource({TENANT: people["records"]}), dict(senders), bus.append,
        open_conversation=lambda tenant, cid: cid in busy, clock=lambda: NOON,
        sleep=no_sleep, default_rate_per_s=1e9, assign=assign,
    )  # fmt: skip
    return marketing, senders, bus


def respond(
    marketing: Marketing, cid: str, people: dict[str, Any], rng: random.Random
) -> dict[str, int]:
    """Outcomes drawn from the module's response model, recorded through `record_outcome`."""
    segment = {r.customer_id: next(iter(r.segments)) for r in people["records"]}
    drawn = Counter()
    for send in marketing.store.sends(cid):
        customer, arm, sent = send["customer_id"], send["arm"], send["status"] == "sent"
        rate = BASE[segment[customer]]
        if sent:
            rate += SENT_EFFECT + (TRUE_LIFT if arm == "offer" else 0.0)
        if rng.random() < rate:
            value = round(120 + rng.expovariate(1 / 80), 2)
            marketing.record_outcome(
                TENANT, cid, customer, "converted", value, send["channel"] or "wecom"
            )
            drawn["converted"] += 1
        if sent and rng.random() < REPLY[arm]:
            marketing.record_outcome(TENANT, cid, customer, "replied", channel=send["channel"])
            drawn["replied"] += 1
    return dict(drawn)


def campaign(n: int, seed: int) -> dict[str, Any]:
    """Preview, create, launch, draw outcomes, results; what each rule removed."""
    rng = random.Random(seed)
    people = population(n, rng)
    marketing, senders, bus = world(people, seed)
    spec = CampaignSpec.model_validate(SPEC)
    seen = marketing.preview(TENANT, Audience.model_validate(SPEC["audience"]))
    cid = marketing.create(TENANT, spec)["id"]
    run = asyncio.run(marketing.launch(TENANT, cid))
    arms = Counter(s["arm"] for s in marketing.store.sends(cid) if s["status"] != "claimed")
    drawn = respond(marketing, cid, people, rng)
    results = marketing.results(TENANT, cid)
    received = {c for s in senders.values() for _, c, _ in s.sent}
    removed = {k.split(":", 1)[1]: v for k, v in run["counts"].items() if k.startswith("skipped:")}
    units = results["summary"]["units"]
    sent_share = {a: results["sent"].get(a, 0) / units[a] for a in ("control", "offer")}
    return {
        "population": n,
        "audience": {"count": seen["count"], "of": seen.get("population")},
        "launch": run["counts"],
        "removed_by_rule": {**dict.fromkeys(RULES, 0), **removed},
        "sent_by_channel": {c: len(s.sent) for c, s in senders.items()},
        "opted_out_who_received": len(received & people["opted_out"]),
        "outcomes_drawn": drawn,
        "events_published": len(bus),
        "true_lift_if_sent": TRUE_LIFT,
        "true_itt_lift": round(TRUE_LIFT * (sent_share["offer"]), 4),
        "results": results["summary"],
        "vs_holdout": results["vs_holdout"],
        "sent": results["sent"],
        "stored_rows_by_arm": dict(arms),
    }  # fmt: skip


def hillstrom(rerun: bool, settings: Any = None) -> dict[str, Any]:
    """Qini and uplift@30 per outcome/treatment: from the stored bench file, or seed 0 again."""
    if rerun:
        from pipelines.uplift import eval_uplift

        found = eval_uplift(settings, [0])
        source = "rerun: pipelines.uplift.eval_uplift, seed 0"
    else:
        found = json.loads(HILLSTROM.read_text(encoding="utf-8"))
        source = str(HILLSTROM)
    rows = {
        key: {"qini_ours": row["qini_auc"]["ours"]["mean"],
              "qini_baseline": row["qini_auc"]["baseline"]["mean"],
              "uplift_at_30_ours": row["uplift_at_30"]["ours"]["mean"],
              "seeds": len(row["seeds"]), "beats_baseline": row["beats_baseline"]}
        for key, row in found["summary"].items()
    }  # fmt: skip
    return {"source": source, "dataset": found["dataset"], "summary": rows}


def eval_marketing(
    n: int = 4000, seed: int = 0, rerun: bool = False, settings: Any = None, served: int = 0
) -> dict[str, Any]:
    """The in-process campaign and the Hillstrom figures; with `served` > 0 customers, also
    the campaign through the running gateway (pipelines/marketing_served.py)."""
    started, load_before = time.perf_counter(), os.getloadavg()
    result = {
        "command": f"scrm eval marketing --customers {n} --seed {seed}"
        + (" --rerun" if rerun else "")
        + (f" --served {served}" if served else ""),
        "seed": seed,
        "data": "synthetic population (seeded), response model in pipelines/marketing_eval.py",
        "campaign": campaign(n, seed),
        "hillstrom": hillstrom(rerun, settings),
    }
    if served:
        from pipelines.marketing_served import served_campaign

        result["served_campaign"] = served_campaign(served, seed, Path(__file__).parents[1])
    result["seconds"] = round(time.perf_counter() - started, 2)
    result["load_average"] = {"before": load_before, "after": os.getloadavg()}
    return result
