"""Marketing metrics on the gateway's registry (issue 22): sends, deliveries, opens, replies,
conversions per campaign and channel, refusals per protective rule, triggers fired, and the
background launches.

Counted where marketing already speaks: every send and every recorded outcome is a
`CampaignEvent` it publishes (`metered` wraps that publish), every refusal goes through
`Marketing.on_skip`. Labels are the tenant, the campaign id (an opaque id, not a name a
marketer typed), the channel, the arm and the rule: bounded sets, never a customer id. A
conversion rate per campaign is a ratio of two counters in PromQL:
`sum by (campaign) (scrm_marketing_outcomes_total{kind="converted"}) /
 sum by (campaign) (scrm_marketing_sends_total)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

CHANNELS = frozenset({"wecom", "dingtalk", "web_chat", "mqtt"})
KINDS = frozenset({"delivered", "opened", "replied", "converted"})
RULES = frozenset({"consent", "opt_out", "purpose", "open_conversation", "quiet_hours", "cap_day",
                   "cap_week", "wecom_limit", "unreachable"})  # fmt: skip


def bounded(value: str | None, allowed: frozenset[str]) -> str:
    return value if value in allowed else "other"


class MarketingMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        registry = registry if registry is not None else CollectorRegistry()

        def counter(name: str, text: str, labels: list[str]) -> Counter:
            return Counter(name, text, labels, registry=registry)

        self.sends = counter(
            "scrm_marketing_sends",
            "Campaign messages sent, by campaign, channel and arm.",
            ["tenant", "campaign", "channel", "arm"],
        )
        self.outcomes = counter(
            "scrm_marketing_outcomes",
            "Campaign outcomes recorded once per customer: delivered, opened, replied, converted.",
            ["tenant", "campaign", "channel", "kind"],
        )
        self.blocked = counter(
            "scrm_marketing_blocked",
            "Sends a protective rule refused (each attempt: a deferred customer is asked again).",
            ["tenant", "campaign", "rule"],
        )
        self.triggers = counter(
            "scrm_marketing_triggers",
            "Bus events and signals the marketing consumer handed to campaigns, by outcome.",
            ["type", "outcome"],
        )
        self.launches = counter(
            "scrm_marketing_launches",
            "Campaign launches by how they ran (inline, queued) and how they ended.",
            ["mode", "outcome"],
        )

    def observe(self, event: Any) -> None:
        """A published marketing event (a `CampaignEvent`; anything else is not counted)."""
        kind = str(getattr(event, "type", ""))
        if not kind.startswith("campaign."):
            return
        kind = kind.removeprefix("campaign.")
        labels = (event.tenant, event.campaign_id, bounded(event.channel, CHANNELS))
        if kind == "sent":
            self.sends.labels(*labels, str(event.arm or "none")[:64]).inc()
        elif kind in KINDS:
            self.outcomes.labels(*labels, kind).inc()

    def skipped(self, tenant: str, campaign_id: str, rule: str) -> None:
        """A rule refused a send (`Marketing.on_skip`)."""
        self.blocked.labels(tenant, campaign_id, bounded(rule, RULES)).inc()

    def trigger(self, kind: str, outcome: str) -> None:
        kind = kind if kind.startswith("signal:") or kind.count(".") == 1 else "other"
        self.triggers.labels(kind[:40], outcome).inc()


def metered(publish: Callable[[Any], Any], metrics: MarketingMetrics) -> Callable[[Any], Any]:
    """`publish`, then the event counted (only once the bus took it)."""

    def publish_and_count(event: Any) -> Any:
        result = publish(event)
        metrics.observe(event)
        return result

    return publish_and_count
