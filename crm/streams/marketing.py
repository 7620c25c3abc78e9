"""The marketing consumer: bus events that can start an event-triggered campaign, in an outbox.

Campaigns live in the gateway (crm/marketing), the stream processors wherever the stream lock
is held (a Conversation replica or `scrm events run`): so this processor does not send
anything. It derives what a campaign trigger needs from everyone's events and writes it to
`marketing_outbox` in the same sqlite transaction as its checkpoint (events.checkpoint): an
event is in the outbox exactly once, whatever is redelivered, and nothing read is lost in a
restart. The gateway drains the outbox (crm/marketing/feed.py) into `Marketing.on_event`; a
row is marked done only after that, and a send is claimed per (campaign, step, customer), so a
row drained twice (a crash between send and mark, two replicas) still sends once.

Derived here, with per-customer state so a replay derives the same rows:

- `signal:churn_crossed`: a churn `prediction.made` (model `churn`, `confidence` = P(churn))
  higher than the customer's previous one (body: score, previous; each campaign's threshold
  decides whether it crossed);
- `signal:low_csat_handoff`: a CSAT `feedback.given` within `csat_window_s` after the
  customer's handoff was resolved (body: csat, ticket; the campaign's `csat_at_most` decides);
- purchases: `campaign.converted` times, for the no-purchase tick (crm/marketing/feed.py);
- the raw events of `RAW_TYPES` (low-volume types a trigger may name directly).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from events.codec import encode
from events.schemas import ErasureRequested, Event, FeedbackGiven, Handoff, PredictionMade

NAME = "marketing_triggers"
CHURN_MODELS = frozenset({"churn"})
RAW_TYPES = frozenset(
    {"prediction.made", "feedback.given", "customer.updated", "tag.changed", "handoff.resolved"}
)
SIGNALS = ("signal:churn_crossed", "signal:low_csat_handoff", "signal:no_purchase")
SCHEMA = """
CREATE TABLE IF NOT EXISTS marketing_outbox (
    event_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, customer_id TEXT NOT NULL,
    type TEXT NOT NULL, at TEXT NOT NULL, body TEXT NOT NULL, attempts INTEGER NOT NULL
    DEFAULT 0, lease_until REAL NOT NULL DEFAULT 0, done_at TEXT, outcome TEXT
);
CREATE INDEX IF NOT EXISTS marketing_outbox_pending ON marketing_outbox (done_at, at);
CREATE TABLE IF NOT EXISTS marketing_churn (
    tenant TEXT NOT NULL, customer_id TEXT NOT NULL, score REAL NOT NULL,
    PRIMARY KEY (tenant, customer_id)
);
CREATE TABLE IF NOT EXISTS marketing_resolved (
    tenant TEXT NOT NULL, customer_id TEXT NOT NULL, ticket_id TEXT, at TEXT NOT NULL,
    PRIMARY KEY (tenant, customer_id)
);
CREATE TABLE IF NOT EXISTS marketing_purchases (
    tenant TEXT NOT NULL, customer_id TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (tenant, customer_id)
);
"""
TABLES = ("marketing_outbox", "marketing_churn", "marketing_resolved", "marketing_purchases")


@dataclass(frozen=True)
class Signal:
    """A derived trigger in the shape `Marketing.on_event` reads (type, tenant, customer)."""

    type: str
    tenant: str
    customer_id: str
    at: datetime
    event_id: str
    value: dict[str, Any] = field(default_factory=dict)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def put(db: sqlite3.Connection, signal_or_event: Any, body: str) -> None:
    """One outbox row, once per event id (a second insert of the same id is ignored)."""
    e = signal_or_event
    db.execute(
        "INSERT OR IGNORE INTO marketing_outbox (event_id, tenant, customer_id, type, at, body)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (e.event_id, e.tenant, e.customer_id, e.type, _iso(e.at), body),
    )


def put_signal(db: sqlite3.Connection, signal: Signal) -> None:
    put(db, signal, json.dumps(signal.value, sort_keys=True))


class MarketingTriggers:
    """Stream processor `marketing_triggers` (crm/streams/runner.py)."""

    name = NAME

    def __init__(self, csat_window_s: float = 7 * 86_400.0):
        self.csat_window_s = csat_window_s

    def setup(self, db: sqlite3.Connection) -> None:
        db.executescript(SCHEMA)

    def apply(self, db: sqlite3.Connection, batch: Sequence[tuple[int, Event]]) -> list:
        for _, e in batch:
            if isinstance(e, ErasureRequested):
                for table in TABLES:
                    db.execute(
                        f"DELETE FROM {table} WHERE tenant = ? AND customer_id = ?",
                        (e.tenant, e.customer_id),
                    )
                continue
            if e.type in RAW_TYPES:
                put(db, e, encode(e).decode())
            if isinstance(e, PredictionMade):
                self._churn(db, e)
            elif isinstance(e, Handoff) and e.type == "handoff.resolved":
                db.execute(
                    "INSERT OR REPLACE INTO marketing_resolved VALUES (?, ?, ?, ?)",
                    (e.tenant, e.customer_id, e.ticket_id, _iso(e.at)),
                )
            elif isinstance(e, FeedbackGiven) and e.csat is not None:
                self._csat(db, e)
            elif e.type == "campaign.converted":
                db.execute(
                    "INSERT INTO marketing_purchases VALUES (?, ?, ?) ON CONFLICT (tenant, "
                    "customer_id) DO UPDATE SET at = MAX(at, excluded.at)",
                    (e.tenant, e.customer_id, _iso(e.at)),
                )
        return []

    def after_commit(self, changed: list) -> None:
        """The gateway drains the outbox; nothing to do here."""

    def _churn(self, db: sqlite3.Connection, e: PredictionMade) -> None:
        if e.model not in CHURN_MODELS or e.confidence is None:
            return
        key = (e.tenant, e.customer_id)
        row = db.execute(
            "SELECT score FROM marketing_churn WHERE tenant = ? AND customer_id = ?", key
        ).fetchone()
        previous = row[0] if row else None
        db.execute("INSERT OR REPLACE INTO marketing_churn VALUES (?, ?, ?)", (*key, e.confidence))
        if previous is None or e.confidence > previous:  # only a rise can cross upwards
            value = {"score": e.confidence, "previous": previous}
            put_signal(db, Signal(SIGNALS[0], *key, e.at, f"{e.event_id}:churn", value))

    def _csat(self, db: sqlite3.Connection, e: FeedbackGiven) -> None:
        key = (e.tenant, e.customer_id)
        row = db.execute(
            "SELECT ticket_id, at FROM marketing_resolved WHERE tenant = ? AND customer_id = ?",
            key,
        ).fetchone()
        if row is None:
            return
        resolved_at = datetime.fromisoformat(row[1])
        if not timedelta(0) <= e.at - resolved_at <= timedelta(seconds=self.csat_window_s):
            return
        db.execute("DELETE FROM marketing_resolved WHERE tenant = ? AND customer_id = ?", key)
        value = {"csat": e.csat, "ticket_id": row[0]}
        put_signal(db, Signal(SIGNALS[1], *key, e.at, f"{e.event_id}:csat", value))


def last_purchase(db: sqlite3.Connection, tenant: str, customer_id: str) -> datetime | None:
    row = db.execute(
        "SELECT at FROM marketing_purchases WHERE tenant = ? AND customer_id = ?",
        (tenant, customer_id),
    ).fetchone()
    return datetime.fromisoformat(row[0]) if row else None
