"""Builds a gateway replica's marketing parts over the application's own stores.

- customers: `ProfileSource` reads what the 360 profile reads (features and insight features
  from Feast, tags, the consent ledger) for the tenant's known customers (ids from the tag
  store and the consent ledger, i.e. everyone the tag engine or a consent event has seen);
- senders: the channel service's active push, to the sender id the identity map links to the
  customer on that channel (none: not reachable there, the next channel is tried);
- events: the replica's bus publisher. Nothing here is module state.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from crm.insight.consent import consent_of
from crm.marketing.audience import CustomerRecord
from crm.marketing.campaigns import Marketing, Sender
from crm.marketing.store import CampaignStore
from crm.messages import Reply

STORE = "data/marketing/campaigns.db"
NOT_FIELDS = {"tags", "name", "phone", "email", "address", "id_number"}


def known_ids(paths: list[Path]) -> Callable[[str], list[str]]:
    """The tenant's customers seen by the tag store or the consent ledger."""
    queries = {
        "tags": "SELECT DISTINCT customer_id FROM tags WHERE tenant = ?",
        "consent_state": "SELECT DISTINCT customer_id FROM consent_state WHERE tenant = ?",
    }

    def ids(tenant: str) -> list[str]:
        found: set[str] = set()
        for path in paths:
            if not path.is_file():
                continue
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                for sql in queries.values():
                    with contextlib.suppress(sqlite3.OperationalError):  # not in this file
                        found.update(row[0] for row in db.execute(sql, (tenant,)))
            finally:
                db.close()
        return sorted(found)

    return ids


class ProfileSource:
    """Customer records from the profile service's stores (no contact data is read)."""

    def __init__(self, profiles: Any, ids: Callable[[str], Iterable[str]]):
        self.profiles, self.ids = profiles, ids

    def record(self, tenant: str, customer_id: str) -> CustomerRecord:
        values = self.profiles.features_of(customer_id)
        scores = {
            k.removesuffix("_score"): float(v)
            for k, v in values.items()
            if (k.endswith("_score") or k.startswith("uplift:")) and isinstance(v, int | float)
        }
        segments = {str(values[k]) for k in ("rfm_tier", "cluster") if values.get(k) is not None}
        tags = {t["tag"] for t in self.profiles.tags.current(tenant, customer_id)}
        consent = {
            c["purpose"]: c["granted"]
            for c in consent_of(self.profiles.derived_db, tenant, customer_id)
        }
        fields = {k: v for k, v in values.items() if k not in NOT_FIELDS and v is not None}
        return CustomerRecord(
            customer_id, fields, frozenset(segments), frozenset(tags), scores, consent
        )

    def customers(self, tenant: str) -> Iterable[CustomerRecord]:
        for customer_id in self.ids(tenant):
            yield self.record(tenant, customer_id)


def channel_senders(channels: Any, names: Iterable[str]) -> dict[str, Sender]:
    """One marketing sender per channel over `ChannelService.push`."""

    def sender_for(channel: str) -> Sender:
        async def send(tenant: str, customer_id: str, text: str) -> bool:
            ids = channels.identity.senders(channel, customer_id, tenant)
            if not ids:
                return False
            await channels.push(channel, ids[0], text, "marketing")
            return True

        return send

    return {name: sender_for(name) for name in names}


def opt_out_handler(handler: Any, optouts: Any, publish: Callable[[Any], Any]) -> Any:
    """A `MessageHandler` that ends all marketing on 退订 / unsubscribe / TD from any channel
    (recorded, `consent.changed` published) and confirms it; every other message goes to
    `handler` unchanged. A bare keyword ("TD", "退订") is answered with the confirmation alone;
    a sentence that also says something ("服务太差了，我要退订") still reaches the dialogue
    (it may be about cancelling a product), and its reply carries the confirmation. Wire it
    around the gateway's handler (crm/parts.py) so the channels and the intake worker both
    pass through it."""
    from crm.marketing.rules import handle_inbound_text, is_bare_unsubscribe

    async def handle(message: Any) -> Any:
        customer = message.customer_id
        opted_out = bool(customer) and handle_inbound_text(
            message.text,
            message.tenant,
            customer,
            message.channel,
            optouts,
            publish,
            message.received_at,
        )
        if opted_out and is_bare_unsubscribe(message.text):
            return Reply(text=CONFIRM)
        reply = await handler(message)
        if opted_out and reply.text:  # an agent-owned turn (empty text) stays silent
            reply = reply.model_copy(update={"text": f"{reply.text}\n{CONFIRM}"})
        return reply

    return handle


CONFIRM = "已为您退订全部营销消息。/ You will receive no more marketing messages."


def build_marketing(
    settings: Any,
    channels: Any,
    publish: Callable[[Any], Any],
    profiles: Any,
    open_conversation: Callable[[str, str], bool] | None = None,
) -> Marketing:
    path = settings.path(STORE)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = known_ids(
        [settings.path(settings.insight.tags_db), settings.path(settings.events.derived_db)]
    )
    return Marketing(
        store=CampaignStore(path),
        source=ProfileSource(profiles, ids),
        senders=channel_senders(channels, ("wecom", "dingtalk", "web_chat", "mqtt")),
        publish=publish,
        **({"open_conversation": open_conversation} if open_conversation else {}),
    )
