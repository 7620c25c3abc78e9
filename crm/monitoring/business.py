"""Business metrics by tenant and channel, recorded in the Conversation replicas where turns
and desk actions happen: sessions, messages, replies by kind, auto-answered and auto-resolved
turns, handoffs, first-response time, queue wait, resolution time and CSAT.

Shares are ratios of counters taken in PromQL (README "Monitoring"), so every replica adds to
the same totals: auto-answered share = auto_answered / messages, handoff rate = handoffs /
messages. Channel and reply kind are bounded sets (anything else is `other`); tenants are the
deployment's configured tenants; no customer, session or ticket id is ever a label.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

CHANNELS = frozenset({"wecom", "dingtalk", "web_chat", "mqtt"})
KINDS = frozenset({"answer", "task", "chitchat", "clarify", "handoff", "queued", "with_agent"})
AUTO_ANSWERED = frozenset({"answer", "task", "chitchat"})
SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 14400, 86400)


def bounded(value: str | None, allowed: frozenset[str]) -> str:
    return value if value in allowed else "other"


class BusinessMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        registry = registry if registry is not None else CollectorRegistry()
        tc = ["tenant", "channel"]

        def counter(name: str, text: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(name, text, [*tc, *extra], registry=registry)

        def histogram(name: str, text: str, buckets: tuple[float, ...] = SECONDS) -> Histogram:
            return Histogram(name, text, tc, buckets=buckets, registry=registry)

        self.sessions = counter("scrm_business_sessions", "Conversations started.")
        self.messages = counter("scrm_business_messages", "Customer messages handled.")
        self.replies = counter("scrm_business_replies", "Bot replies by kind.", ("kind",))
        self.auto_answered = counter(
            "scrm_business_auto_answered",
            "Messages the bot answered itself (answer, task, chitchat).",
        )
        self.auto_resolved = counter(
            "scrm_business_auto_resolved", "Task flows the bot carried to the end (status done)."
        )
        self.handoffs = counter("scrm_business_handoffs", "Conversations handed to a human.")
        self.first_response = histogram(
            "scrm_business_first_response_seconds", "Time to the first reply of a new conversation."
        )
        self.queue_wait = histogram(
            "scrm_business_queue_wait_seconds", "Handoff ticket opened -> accepted by an agent."
        )
        self.resolution = histogram(
            "scrm_business_resolution_seconds",
            "Handoff ticket opened -> closed or sent back to the bot.",
        )
        self.csat = histogram(
            "scrm_business_csat", "Customer satisfaction scores (1-5).", (1, 2, 3, 4, 5)
        )

    def turn(
        self, tenant: str, channel: str, reply: dict[str, Any], seconds: float, new_session: bool
    ) -> None:
        """One customer message and the bot's reply (`reply`: the dialogue's reply fields)."""
        labels = (tenant or "default", bounded(channel, CHANNELS))
        kind = str(reply.get("kind") or "")
        self.messages.labels(*labels).inc()
        self.replies.labels(*labels, bounded(kind, KINDS)).inc()
        if new_session:
            self.sessions.labels(*labels).inc()
            self.first_response.labels(*labels).observe(seconds)
        if kind in AUTO_ANSWERED:
            self.auto_answered.labels(*labels).inc()
        if kind == "task" and reply.get("flow_status") == "done":
            self.auto_resolved.labels(*labels).inc()
        if kind == "handoff":
            self.handoffs.labels(*labels).inc()

    def ticket(self, op: str, tenant: str, channel: str, opened_at: float, now: float) -> None:
        """A desk action on a handoff ticket opened at `opened_at` (unix seconds)."""
        labels = (tenant or "default", bounded(channel, CHANNELS))
        waited = max(0.0, now - opened_at)
        if op == "accept":
            self.queue_wait.labels(*labels).observe(waited)
        elif op in ("close", "transfer"):
            self.resolution.labels(*labels).observe(waited)

    def record_csat(self, tenant: str, channel: str, score: int) -> None:
        """A customer's 1-5 satisfaction score (the feedback code calls this)."""
        if not 1 <= int(score) <= 5:
            raise ValueError(f"CSAT is 1-5, got {score}")
        self.csat.labels(tenant or "default", bounded(channel, CHANNELS)).observe(int(score))
