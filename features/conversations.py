"""Conversation events -> per-customer aggregates, in batch and as a live stream.

The seed design streams chat events through Kafka and a Flink job keyed by customer. Here the
event log is a sqlite table (any process may append), the "job" is `conversation_stats`
applied to one customer's recent events, and its result is pushed to Feast's online store.
The batch path replays the whole log through the same function, so offline training sets and
online reads agree by construction.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from features.rfm import epoch_seconds

CHANNELS = ("wecom", "dingtalk", "web_chat")
WINDOWS = {"messages_1d": "1D", "messages_7d": "7D", "messages_30d": "30D"}
LOOKBACK = timedelta(days=30)
STAT_COLUMNS = [
    "messages_1d",
    "messages_7d",
    "messages_30d",
    "negative_share_30d",
    "handoffs_30d",
    "last_intent",
    "channels_30d",
    "last_message_ts",
]
EVENT_COLUMNS = ["customer_id", "at", "channel", "intent", "sentiment", "handoff"]


@dataclass(frozen=True)
class ConversationEvent:
    """One customer message as the gateway saw it (intent and sentiment may be unknown)."""

    customer_id: str
    at: datetime
    channel: str
    intent: str | None = None
    sentiment: str | None = None
    handoff: bool = False


def as_frame(events: pd.DataFrame) -> pd.DataFrame:
    frame = events[EVENT_COLUMNS].copy()
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    frame["handoff"] = frame["handoff"].astype(bool)
    return frame.sort_values(["customer_id", "at"], kind="stable", ignore_index=True)


def conversation_stats(events: pd.DataFrame) -> pd.DataFrame:
    """One row per event: the customer's aggregates as of (and including) that event."""
    frame = as_frame(events)
    per_customer = frame.set_index("at").groupby("customer_id", sort=False)
    ones = frame.assign(
        message=1,
        negative=(frame["sentiment"] == "negative").astype(int),
        scored=frame["sentiment"].notna().astype(int),
        handoffs=frame["handoff"].astype(int),
        **{f"on_{c}": (frame["channel"] == c).astype(int) for c in CHANNELS},
    ).set_index("at")
    counted = ones.groupby("customer_id", sort=False)

    def rolling_sum(column: str, window: str) -> pd.Series:
        return counted[column].rolling(window).sum().reset_index(drop=True)

    out = pd.DataFrame({"customer_id": frame["customer_id"], "event_timestamp": frame["at"]})
    for name, window in WINDOWS.items():
        out[name] = rolling_sum("message", window).astype("int64").to_numpy()
    scored = rolling_sum("scored", "30D").to_numpy()
    negative = rolling_sum("negative", "30D").to_numpy()
    share = np.divide(negative, scored, out=np.full(len(out), np.nan), where=scored > 0)
    out["negative_share_30d"] = share.round(4)
    out["handoffs_30d"] = rolling_sum("handoffs", "30D").astype("int64").to_numpy()
    out["last_intent"] = per_customer["intent"].ffill().to_numpy()
    used = {c: rolling_sum(f"on_{c}", "30D").to_numpy() > 0 for c in CHANNELS}
    channels = [",".join(c for c in sorted(CHANNELS) if used[c][i]) for i in range(len(out))]
    out["channels_30d"] = pd.Series(channels, dtype="object")
    out["last_message_ts"] = epoch_seconds(out["event_timestamp"]).astype("int64")
    return out


def stamp(moment: datetime) -> str:
    """One fixed-width UTC text form, so sqlite compares event times correctly as strings."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class EventLog:
    """Append-only conversation events in sqlite: the durable record both paths read."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS events (customer_id TEXT NOT NULL, at TEXT NOT NULL,"
                " channel TEXT NOT NULL, intent TEXT, sentiment TEXT, handoff INTEGER NOT NULL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS by_customer ON events (customer_id, at)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def append(self, event: ConversationEvent) -> None:
        row = asdict(event) | {"at": stamp(event.at)}
        with self._connect() as db:
            db.execute(
                "INSERT INTO events VALUES (:customer_id, :at, :channel, :intent, :sentiment,"
                " :handoff)",
                row,
            )

    def recent(self, customer_id: str, until: datetime) -> pd.DataFrame:
        since = stamp(until - LOOKBACK)
        with self._connect() as db:
            return pd.read_sql_query(
                "SELECT * FROM events WHERE customer_id = ? AND at > ? AND at <= ? ORDER BY at",
                db,
                params=(customer_id, since, stamp(until)),
            )

    def all(self) -> pd.DataFrame:
        with self._connect() as db:
            return pd.read_sql_query("SELECT * FROM events ORDER BY customer_id, at", db)


def latest_stats(recent_events: pd.DataFrame) -> pd.DataFrame:
    """The one aggregate row to push after a customer's newest event."""
    return conversation_stats(recent_events).tail(1).reset_index(drop=True)


def empty_stats() -> pd.DataFrame:
    """The batch source's schema with no rows (a log with no events yet)."""
    no_events = pd.DataFrame({c: pd.Series(dtype="object") for c in EVENT_COLUMNS})
    stats = conversation_stats(no_events.assign(handoff=pd.Series(dtype=bool)))
    # An object column with no rows is written to parquet as type NULL, and Feast's
    # point-in-time join cannot compare a NULL-typed key with the entity frame's string key.
    return stats.astype({c: "string" for c in stats.select_dtypes("object").columns})
