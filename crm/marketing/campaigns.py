"""Campaigns: define, dry-run, launch, pause, resume; journeys of steps with waits and branches.

    draft --launch--> running --pause--> paused --resume--> running --(all steps done)--> done

A launch freezes the audience (snapshot with its time), assigns each member an arm (salted
hash, holdout first), asks every protective rule (crm/marketing/rules.py) and sends the first
step through the channel's passed-in sender, paced by the channel's rate limit. Each send is
claimed in the store first, keyed by (campaign, step, customer): a replayed launch, a resume
or a second replica never sends a step twice. Every send and every outcome recorded later
(delivered, replied, converted) is published as a `CampaignEvent`. `tick` sends the later
steps whose wait has passed and whose branch holds. Customers refused by a rule are skipped
with the rule's reason and asked again on the next run (a cap or quiet hours pass).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from crm.marketing import rules
from crm.marketing.arms import HOLDOUT, Assign, engine_assign
from crm.marketing.audience import CustomerRecord, CustomerSource, masked_id, preview, snapshot
from crm.marketing.results import campaign_results
from crm.marketing.spec import CampaignSpec
from crm.marketing.store import CampaignStore
from crm.marketing.templates import personalised, render
from events.schemas import CampaignEvent

# A channel's marketing sender: (tenant, customer id, text) -> False when the customer cannot
# be reached on it (no identity there); raises when the channel refuses.
Sender = Callable[[str, str, str], Awaitable[bool]]
OUTCOMES = ("delivered", "opened", "replied", "converted")


class StateError(ValueError):
    """A transition the campaign's state does not allow (409)."""


class Pacer:
    """A channel's rate limit: sends spaced 1/rate apart (the vendor's limits, not ours)."""

    def __init__(
        self,
        rate_per_s: float,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.interval, self.sleep, self.clock = 1.0 / rate_per_s, sleep, clock
        self.next_at = 0.0

    async def wait(self) -> None:
        now = self.clock()
        if self.next_at > now:
            await self.sleep(self.next_at - now)
            now = self.next_at
        self.next_at = now + self.interval


def message_text(
    spec: CampaignSpec, arm: str, step: int, channel: str, record: CustomerRecord
) -> str:
    """The customer's text: the plain version if they refused personalisation, always with
    the refusal line, and the non-personalised option when it is personalised (PIPL art. 24)."""
    template = spec.template(arm, step, channel)
    plain = rules.wants_plain(record.consent) and template.plain is not None
    text = render(template.plain if plain else template.text, record)
    return rules.art24_text(text, personalised(template.text) and not plain)


@dataclass
class Marketing:
    store: CampaignStore
    source: CustomerSource
    senders: dict[str, Sender]
    publish: Callable[[Any], Any]
    open_conversation: rules.OpenConversation = lambda tenant, customer_id: False
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    assign: Assign = field(default_factory=engine_assign)
    default_rate_per_s: float = 20.0
    on_skip: Callable[[str, str, str], None] = lambda tenant, campaign_id, rule: None

    # --- definition -----------------------------------------------------------------------
    def create(self, tenant: str, spec: CampaignSpec) -> dict[str, Any]:
        cid = self.store.create(tenant, spec.name, spec.model_dump(mode="json"), self.clock())
        return self.store.get(tenant, cid)  # type: ignore[return-value]

    def preview(self, tenant: str, spec_or_audience: Any) -> dict[str, Any]:
        return preview(spec_or_audience, self.source, tenant)

    def campaign(self, tenant: str, campaign_id: str) -> tuple[dict[str, Any], CampaignSpec]:
        found = self.store.get(tenant, campaign_id)
        if found is None:
            raise KeyError(campaign_id)
        return found, CampaignSpec.model_validate(found["spec"])

    def results(self, tenant: str, campaign_id: str) -> dict[str, Any]:
        """The campaign's arms compared (crm/marketing/results.py); KeyError if not ours."""
        return campaign_results(self, tenant, campaign_id)

    # --- state machine --------------------------------------------------------------------
    async def launch(self, tenant: str, campaign_id: str) -> dict[str, Any]:
        """Draft -> running, freeze the audience, send due steps. Launching a running
        campaign again only re-runs what is due (nothing is sent twice)."""
        self.prepare(tenant, campaign_id)
        return await self.run(tenant, campaign_id)

    def prepare(self, tenant: str, campaign_id: str) -> dict[str, Any]:
        """The launch without its sends: a draft's audience frozen now, state running."""
        found, spec = self.campaign(tenant, campaign_id)
        if found["state"] in ("paused", "done"):
            raise StateError(f"campaign is {found['state']}: resume it or create a new one")
        if found["state"] == "draft":
            members = snapshot(spec.audience, self.source, tenant, self.clock())
            frozen = [] if spec.trigger is not None else list(members.members)
            self.store.freeze(campaign_id, frozen, members.at)
            self.store.transition(tenant, campaign_id, ("draft",), "running")
        return self.store.get(tenant, campaign_id)  # type: ignore[return-value]

    def pause(self, tenant: str, campaign_id: str) -> dict[str, Any]:
        self.campaign(tenant, campaign_id)
        if not self.store.transition(tenant, campaign_id, ("running",), "paused"):
            raise StateError("only a running campaign can be paused")
        return self.store.get(tenant, campaign_id)  # type: ignore[return-value]

    async def resume(self, tenant: str, campaign_id: str) -> dict[str, Any]:
        self.campaign(tenant, campaign_id)
        if not self.store.transition(tenant, campaign_id, ("paused",), "running"):
            raise StateError("only a paused campaign can be resumed")
        return await self.run(tenant, campaign_id)

    async def tick(self, tenant: str) -> list[dict[str, Any]]:
        """Send the journeys' later steps that came due (a periodic task calls this)."""
        return [
            await self.run(tenant, c["id"])
            for c in self.store.list(tenant)
            if c["state"] == "running"
        ]

    async def tick_all(self) -> int:
        """`tick` for every tenant with a running campaign; how many campaigns ran."""
        return sum([len(await self.tick(tenant)) for tenant in self.store.running_tenants()])

    async def on_event(self, event: Any) -> list[str]:
        """A bus event: its customer joins every running event-triggered campaign of the
        tenant that listens for it and whose audience they match now; the first step is sent
        (subject to every rule). The ids of the campaigns joined."""
        joined = []
        for found in self.store.list(event.tenant):
            if event.type == "message.received":
                self.attribute_reply(event, found)
            spec = CampaignSpec.model_validate(found["spec"])
            if found["state"] != "running" or spec.trigger is None:
                continue
            if not spec.trigger.fires(event):  # type, and a signal's threshold
                continue
            record = self.source.record(event.tenant, event.customer_id)
            if record is None or not spec.audience.matches(record):
                continue
            if not self.store.add_member(found["id"], event.customer_id):
                continue  # a member already: its steps are the runs' and ticks' business
            pacers = {
                c: Pacer(spec.rate_per_s.get(c, self.default_rate_per_s), self.sleep)
                for c in spec.channels
            }
            await self.step_for(
                event.tenant, found["id"], spec, 0, record, event.customer_id, pacers
            )
            joined.append(found["id"])
        return joined

    def attribute_reply(self, event: Any, found: dict[str, Any]) -> None:
        """A customer message after a campaign's send is its reply (once per campaign): the
        journey's `replied` branch and the experiment's reply rate read it."""
        cid = event.customer_id
        sent = [s for s in self.store.sends(found["id"]) if s["customer_id"] == cid]
        if any(s["status"] == "sent" for s in sent) and "replied" not in self.store.outcomes_of(
            found["id"], cid
        ):
            channel = next(s["channel"] for s in sent if s["status"] == "sent")
            self.record_outcome(event.tenant, found["id"], cid, "replied", channel=channel)

    # --- dry run and sends ----------------------------------------------------------------
    def dry_run(self, tenant: str, campaign_id: str) -> dict[str, Any]:
        """Who would get what now, with every rule's verdict; nothing is sent or claimed."""
        found, spec = self.campaign(tenant, campaign_id)
        records = self.records(tenant)
        members = found["members"] or spec.audience.members(records.values())
        rows, reasons = [], Counter()
        for cid in members:
            plan = self.plan(tenant, campaign_id, spec, 0, records.get(cid), cid)
            reasons[plan["verdict"]] += 1
            rows.append({**plan, "customer": masked_id(cid)})
        return {
            "campaign_id": campaign_id,
            "audience": len(members),
            "verdicts": dict(reasons),
            "customers": rows[:200],
        }

    def plan(
        self,
        tenant: str,
        campaign_id: str,
        spec: CampaignSpec,
        step: int,
        record: CustomerRecord | None,
        customer_id: str,
    ) -> dict[str, Any]:
        """One customer's arm, channel, text and verdict (`send`, `holdout` or a rule)."""
        arm = self.assign(customer_id, campaign_id, spec.arm_weights(), campaign_id, spec.holdout)
        if arm == HOLDOUT or arm not in spec.arm_weights():
            return {"arm": HOLDOUT, "verdict": HOLDOUT, "channel": None, "text": None}
        record = record or CustomerRecord(customer_id)
        now = self.clock()
        sent = self.store.marketing_sends(tenant, customer_id)
        checks = [
            lambda: rules.consent_verdict(
                record.consent, spec.purpose, self.store.opted_out(tenant, customer_id)
            ),
            lambda: rules.conversation_verdict(self.open_conversation, tenant, customer_id),
            lambda: spec.quiet_hours.verdict(now),
            lambda: rules.cap_verdict(sent, now, spec.quiet_hours.zone, spec.caps),
        ]
        for check in checks:
            verdict = check()
            if not verdict.allowed:
                return {
                    "arm": arm,
                    "verdict": verdict.rule,
                    "reason": verdict.reason,
                    "channel": None,
                    "text": None,
                }
        channel = spec.channels[0] if len(spec.channels) == 1 else None
        text = message_text(spec, arm, step, channel or spec.channels[0], record)
        if "wecom" in spec.channels:
            wecom = rules.wecom_verdict(sent, now, spec.quiet_hours.zone, spec.caps)
            if not wecom.allowed and spec.channels == ["wecom"]:
                return {
                    "arm": arm,
                    "verdict": wecom.rule,
                    "reason": wecom.reason,
                    "channel": None,
                    "text": None,
                }
        return {"arm": arm, "verdict": "send", "channel": channel, "text": text}

    def records(self, tenant: str) -> dict[str, CustomerRecord]:
        return {r.customer_id: r for r in self.source.customers(tenant)}

    async def run(self, tenant: str, campaign_id: str) -> dict[str, Any]:
        """Every due step for every frozen member, while the campaign stays running."""
        found, spec = self.campaign(tenant, campaign_id)
        records, counts = self.records(tenant), Counter()
        pacers = {
            c: Pacer(spec.rate_per_s.get(c, self.default_rate_per_s), self.sleep)
            for c in spec.channels
        }
        for step in range(len(spec.steps)):
            for cid in found["members"] or []:
                if self.store.get(tenant, campaign_id)["state"] != "running":  # type: ignore[index]
                    counts["paused"] += 1
                    return self.finish_run(campaign_id, counts, complete=False)
                outcome = await self.step_for(
                    tenant, campaign_id, spec, step, records.get(cid), cid, pacers
                )
                counts[outcome] += 1
        return self.finish_run(campaign_id, counts, complete=self.all_done(found, spec))

    def finish_run(self, campaign_id: str, counts: Counter, complete: bool) -> dict[str, Any]:
        report = {"at": self.clock().isoformat(), "counts": dict(counts), "complete": complete}
        self.store.save_run(campaign_id, report)
        return {"campaign_id": campaign_id, **report}

    def all_done(self, found: dict[str, Any], spec: CampaignSpec) -> bool:
        """Done (informational): every member has a final row for every step."""
        members = found["members"] or []
        return all(
            self.store.send_of(found["id"], s.name, cid) is not None
            for s in spec.steps
            for cid in members
        )

    async def step_for(
        self,
        tenant: str,
        campaign_id: str,
        spec: CampaignSpec,
        step: int,
        record: CustomerRecord | None,
        cid: str,
        pacers: dict[str, Pacer],
    ) -> str:
        name = spec.steps[step].name
        if self.store.send_of(campaign_id, name, cid) is not None:
            return "already"
        if step > 0 and (why := self.not_due(campaign_id, spec, step, cid)):
            return why
        plan = self.plan(tenant, campaign_id, spec, step, record, cid)
        if plan["verdict"] == HOLDOUT:
            self.store.claim(tenant, campaign_id, name, cid, HOLDOUT, None, HOLDOUT, self.clock())
            return HOLDOUT
        if plan["verdict"] != "send":
            self.on_skip(tenant, campaign_id, plan["verdict"])  # metrics: blocked per rule
            return f"skipped:{plan['verdict']}"
        return await self.deliver(
            tenant, campaign_id, spec, step, record or CustomerRecord(cid), plan["arm"], pacers
        )

    def not_due(self, campaign_id: str, spec: CampaignSpec, step: int, cid: str) -> str:
        """'' when the step is due; else why it waits or never comes."""
        before = self.store.send_of(campaign_id, spec.steps[step - 1].name, cid)
        if before is None or before["status"] != "sent":
            return "waiting" if before is None else "ended"
        if self.clock() < before["at"] + timedelta(seconds=spec.steps[step].wait_s):
            return "waiting"
        done = self.store.outcomes_of(campaign_id, cid)
        when = spec.steps[step].when
        if when == "always" or (when.startswith("not_") and when[4:] not in done):
            return ""
        return "" if when in done else "branch"

    async def deliver(
        self,
        tenant: str,
        campaign_id: str,
        spec: CampaignSpec,
        step: int,
        record: CustomerRecord,
        arm: str,
        pacers: dict[str, Pacer],
    ) -> str:
        """The first channel the customer is reachable on; claimed before it is called."""
        cid, name, now = record.customer_id, spec.steps[step].name, self.clock()
        sent = self.store.marketing_sends(tenant, cid)
        for channel in spec.channels:
            sender = self.senders.get(channel)
            if sender is None:
                continue
            if (
                channel == "wecom"
                and not rules.wecom_verdict(sent, now, spec.quiet_hours.zone, spec.caps).allowed
            ):
                continue
            text = message_text(spec, arm, step, channel, record)
            if not self.store.claim(tenant, campaign_id, name, cid, arm, channel, "claimed", now):
                return "already"
            await pacers[channel].wait()
            try:
                reached = await sender(tenant, cid, text)
            except Exception as error:  # the vendor refused: failed, visible, never re-sent
                self.store.finish(campaign_id, name, cid, "failed", repr(error))
                return "failed"
            if not reached:  # not on this channel: release the claim, try the next one
                self.store.release(campaign_id, name, cid)
                continue
            self.store.finish(campaign_id, name, cid, "sent")
            self.publish(
                CampaignEvent(
                    type="campaign.sent",
                    tenant=tenant,
                    customer_id=cid,
                    campaign_id=campaign_id,
                    channel=channel,
                    at=now,
                    source="marketing",
                    arm=arm,
                    step=name,
                )
            )
            return "sent"
        self.on_skip(tenant, campaign_id, "unreachable")
        return "skipped:unreachable"

    def record_outcome(
        self,
        tenant: str,
        campaign_id: str,
        customer_id: str,
        kind: str,
        value: float | None = None,
        channel: str = "wecom",
        at: datetime | None = None,
    ) -> bool:
        """Delivery, reply, conversion: kept for the journey's branches, published for the
        experiment's analysis. Once per (campaign, customer, kind): False for a repeat."""
        if kind not in OUTCOMES:
            raise ValueError(f"outcome kind must be one of {OUTCOMES}")
        self.campaign(tenant, campaign_id)
        now = at or self.clock()
        if not self.store.outcome(campaign_id, customer_id, kind, now, value):
            return False
        self.publish(
            CampaignEvent(
                type=f"campaign.{kind}",
                tenant=tenant,
                customer_id=customer_id,
                campaign_id=campaign_id,
                channel=channel,
                value=value,
                at=now,
                source="marketing",
            )
        )
        return True
