"""The marketing consumer's gateway side: the outbox drained into `Marketing.on_event`, and the
periodic no-purchase tick.

The stream processor `marketing_triggers` (crm/streams/marketing.py) fills the outbox with
everyone's trigger events, exactly once per event, committed with its checkpoint. Here a
gateway replica takes pending rows under a lease (another replica skips them while it is
held), hands each to `on_event`, and marks it done only afterwards: a crash in between leaves
the row pending and it is handed over again, which sends nothing twice (sends are claimed per
(campaign, step, customer) in the campaign store). A row that keeps failing is given up after
`max_attempts` (outcome `failed`, visible in the table); one older than `max_age_s` when first
seen (a replay of old history) is marked `stale` and starts nothing.

No purchase in N days has no event to wait for: `lapsed` looks at every customer of a tenant
with a running campaign listening for `signal:no_purchase`, takes the freshest of the
profile's `recency_days` and the last `campaign.converted` on the bus, and signals the
customers past that campaign's `no_purchase_days` (a customer joins a campaign once).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crm.marketing.spec import CampaignSpec
from crm.streams.marketing import SCHEMA, SIGNALS, Signal, last_purchase
from events.codec import decode

log = logging.getLogger(__name__)
NO_PURCHASE = SIGNALS[2]


def open_outbox(path: Path) -> sqlite3.Connection:
    from events.checkpoint import open_derived

    db = open_derived(path)
    db.executescript(SCHEMA)
    return db


def as_event(row: tuple) -> Any:
    """An outbox row as what `on_event` reads: the bus event itself, or a `Signal`."""
    event_id, tenant, customer_id, kind, at, body = row
    if kind.startswith("signal:"):
        return Signal(kind, tenant, customer_id, datetime.fromisoformat(at), event_id,
                      json.loads(body))  # fmt: skip
    return decode(body)


@dataclass
class MarketingFeed:
    marketing_of: Callable[[], Any]  # a getter: a replaced part (tests) is the one fed
    derived: Path
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    metrics: Any = None  # crm.monitoring.marketing.MarketingMetrics
    max_age_s: float = 86_400.0
    lease_s: float = 120.0
    max_attempts: int = 5
    batch: int = 200

    def __post_init__(self) -> None:
        self.db = open_outbox(self.derived)
        self.inode = self.derived.stat().st_ino

    def follow_file(self) -> None:
        """Reopen when the derived file was replaced (`scrm events replay` sets the old one
        aside): an open connection would keep reading the old file."""
        with contextlib.suppress(FileNotFoundError):
            if self.derived.stat().st_ino == self.inode:
                return
        self.db.close()
        self.__post_init__()

    def take(self) -> list[tuple]:
        """Pending rows this replica now holds the lease on (oldest first)."""
        now = time.time()
        rows = self.db.execute(
            "SELECT event_id, tenant, customer_id, type, at, body FROM marketing_outbox "
            "WHERE done_at IS NULL AND lease_until < ? ORDER BY at LIMIT ?",
            (now, self.batch),
        ).fetchall()
        mine = []
        for row in rows:
            taken = self.db.execute(
                "UPDATE marketing_outbox SET lease_until = ?, attempts = attempts + 1 "
                "WHERE event_id = ? AND done_at IS NULL AND lease_until < ?",
                (now + self.lease_s, row[0], now),
            )
            if taken.rowcount == 1:
                mine.append(row)
        return mine

    def finish(self, event_id: str, outcome: str) -> None:
        self.db.execute(
            "UPDATE marketing_outbox SET done_at = ?, outcome = ? WHERE event_id = ?",
            (self.clock().isoformat(), outcome, event_id),
        )

    def release(self, event_id: str) -> None:
        """A failed attempt: pending again at once, or given up after `max_attempts`."""
        attempts = self.db.execute(
            "SELECT attempts FROM marketing_outbox WHERE event_id = ?", (event_id,)
        ).fetchone()[0]
        if attempts >= self.max_attempts:
            self.finish(event_id, "failed")
        else:
            self.db.execute(
                "UPDATE marketing_outbox SET lease_until = 0 WHERE event_id = ?", (event_id,)
            )

    async def drain(self, rounds: int = 20) -> dict[str, int]:
        """Hand every pending row to marketing; counts by outcome (joined, none, stale...)."""
        marketing, counts = self.marketing_of(), {}
        if marketing is None:
            return counts
        self.follow_file()
        oldest = self.clock() - timedelta(seconds=self.max_age_s)
        for _ in range(rounds):  # a backlog goes out now, not one batch a second
            rows = self.take()
            for row in rows:
                outcome = await self.hand_over(marketing, row, oldest)
                counts[outcome] = counts.get(outcome, 0) + 1
                if self.metrics is not None:
                    self.metrics.trigger(row[3], outcome)
            if len(rows) < self.batch:
                break
        return counts

    async def hand_over(self, marketing: Any, row: tuple, oldest: datetime) -> str:
        try:
            event = as_event(row)
        except Exception:  # the processor wrote it, so this is a bug: park it, visibly
            log.exception("marketing outbox row %s unreadable", row[0])
            self.finish(row[0], "failed")
            return "failed"
        if event.at < oldest:
            self.finish(row[0], "stale")
            return "stale"
        try:
            joined = await marketing.on_event(event)
        except Exception:
            log.exception("marketing could not take %s", row[3])
            self.release(row[0])
            return "error"
        outcome = "joined" if joined else "none"
        self.finish(row[0], outcome)
        return outcome

    def prune(self, keep_s: float = 7 * 86_400.0) -> int:
        """Forget rows handed over more than `keep_s` ago (the checkpoint keeps them out)."""
        before = (self.clock() - timedelta(seconds=keep_s)).isoformat()
        return self.db.execute(
            "DELETE FROM marketing_outbox WHERE done_at IS NOT NULL AND done_at < ?", (before,)
        ).rowcount

    async def lapsed(self) -> int:
        """Signal `no purchase in N days` to the running campaigns listening for it; how many
        customers joined one."""
        marketing = self.marketing_of()
        if marketing is None:
            return 0
        self.follow_file()
        joined = 0
        for tenant in marketing.store.running_tenants():
            days = self.listening_days(marketing, tenant)
            if days is None:
                continue
            for record in marketing.source.customers(tenant):
                signal = self.no_purchase(tenant, record, days)
                if signal is not None and await marketing.on_event(signal):
                    joined += 1
                    if self.metrics is not None:
                        self.metrics.trigger(NO_PURCHASE, "joined")
        return joined

    @staticmethod
    def listening_days(marketing: Any, tenant: str) -> int | None:
        """The smallest `no_purchase_days` of the tenant's running no-purchase campaigns."""
        days = [
            spec.trigger.no_purchase_days
            for c in marketing.store.list(tenant)
            if c["state"] == "running"
            and (spec := CampaignSpec.model_validate(c["spec"])).trigger is not None
            and NO_PURCHASE in spec.trigger.events
        ]
        return min(days) if days else None

    def no_purchase(self, tenant: str, record: Any, days: int) -> Signal | None:
        """The customer's lapse as a signal when it is at least `days` (unknown: none)."""
        now = self.clock()
        known = []
        recency = record.fields.get("recency_days")
        if isinstance(recency, int | float):
            known.append(float(recency))
        bought = last_purchase(self.db, tenant, record.customer_id)
        if bought is not None:
            known.append((now - bought).total_seconds() / 86_400)
        if not known or min(known) < days:
            return None
        lapse = min(known)
        since = (now - timedelta(days=lapse)).date().isoformat()  # one signal per lapse
        event_id = f"no_purchase:{tenant}:{record.customer_id}:{since}"
        return Signal(NO_PURCHASE, tenant, record.customer_id, now, event_id,
                      {"days": round(lapse, 2)})  # fmt: skip

    def close(self) -> None:
        self.db.close()
