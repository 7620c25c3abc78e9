"""The offline side: every served turn appended to the turn history the pipeline trains on.

`scrm events history` (the `served_history` dvc stage) writes this table, sorted, to the
parquet that `scrm features build` turns into the offline `conversation_stats` source, so the
offline features come from what the gateway served, not from a generator. Late turns are
kept here (the batch path has no watermark to miss them).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from events.schemas import ErasureRequested, Event, TurnRecorded

SCHEMA = """
CREATE TABLE IF NOT EXISTS turn_history (
    event_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, customer_id TEXT NOT NULL,
    at TEXT NOT NULL, channel TEXT NOT NULL, intent TEXT, sentiment TEXT,
    handoff INTEGER NOT NULL, source TEXT NOT NULL
);
"""
COLUMNS = ["customer_id", "at", "channel", "intent", "sentiment", "handoff"]


class TurnHistory:
    name = "turn_history"

    def setup(self, db: sqlite3.Connection) -> None:
        db.executescript(SCHEMA)

    def apply(self, db: sqlite3.Connection, batch: Sequence[tuple[int, Event]]) -> list:
        """Append the turns; an erasure request deletes the customer's turns before it (the
        bus order is kept: runs of inserts, then the delete)."""
        rows: list[tuple] = []
        for _, e in batch:
            if isinstance(e, TurnRecorded):
                rows.append((e.event_id, e.tenant, e.customer_id,
                             e.at.isoformat(timespec="microseconds"), e.channel, e.intent,
                             e.sentiment, int(e.handoff), e.source))  # fmt: skip
            elif isinstance(e, ErasureRequested):
                self._insert(db, rows)
                rows = []
                db.execute("DELETE FROM turn_history WHERE customer_id = ?", (e.customer_id,))
        self._insert(db, rows)
        return []

    @staticmethod
    def _insert(db: sqlite3.Connection, rows: list[tuple]) -> None:
        db.executemany("INSERT OR IGNORE INTO turn_history VALUES (?,?,?,?,?,?,?,?,?)", rows)

    def after_commit(self, changed: list) -> None:
        """Nothing leaves the transaction: the table is the offline store."""


def history_frame(db: sqlite3.Connection) -> pd.DataFrame:
    """The served turns in a stable order (same bus, same frame), in the batch path's columns."""
    frame = pd.read_sql_query(
        "SELECT customer_id, at, channel, intent, sentiment, handoff FROM turn_history"
        " ORDER BY customer_id, at, event_id",
        db,
    )
    frame["at"] = pd.to_datetime(frame["at"], utc=True, format="ISO8601")
    frame["handoff"] = frame["handoff"].astype(bool)
    return frame[COLUMNS]


def write_history(db: sqlite3.Connection, output: Path) -> pd.DataFrame:
    frame = history_frame(db)
    output.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(output, index=False)
    return frame
