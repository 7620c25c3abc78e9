"""Conversation aggregates over event-time windows (1/7/30 days), incrementally, per customer.

Each customer keeps only the turns that can still count: those inside 30 days of the
customer's newest turn plus the allowed lateness. A turn updates that small state and the
customer's row is recomputed from it: never the whole history. Out-of-order turns are
inserted at their event time. The watermark of a partition is the newest event time seen in
it minus `allowed_lateness_s`; a turn older than its watermark is late: counted
(`late_turns`) and kept in the offline history, left out of the windows. The figures match
`features.conversations.conversation_stats` (the batch path) for turns that are not late.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from events.schemas import ErasureRequested, Event, TurnRecorded

DAY = 86400.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS conversation_aggregates (
    customer_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, state BLOB NOT NULL,
    event_timestamp TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS watermarks (
    partition INTEGER PRIMARY KEY, newest REAL NOT NULL, late_turns INTEGER NOT NULL
);
"""
Turn = list  # [epoch seconds, channel, intent, sentiment, handoff, event id]


def stats_of(turns: list[Turn], last_intent: str | None) -> dict[str, Any]:
    """The feature row as of the newest turn, from the retained turns (sorted by time); one
    pass over them."""
    newest = turns[-1][0]
    day, week, month = newest - DAY, newest - 7 * DAY, newest - 30 * DAY
    d1 = d7 = d30 = scored = negative = handoffs = 0
    channels = set()
    for at, channel, _, sentiment, handoff, _ in turns:
        if at <= month:
            continue
        d30 += 1
        d7 += at > week
        d1 += at > day
        channels.add(channel)
        handoffs += bool(handoff)
        if sentiment is not None:
            scored += 1
            negative += sentiment == "negative"
    return {
        "messages_1d": d1,
        "messages_7d": d7,
        "messages_30d": d30,
        "negative_share_30d": round(negative / scored, 4) if scored else None,
        "handoffs_30d": handoffs,
        "last_intent": last_intent,
        "channels_30d": ",".join(sorted(channels)),
        "last_message_ts": int(newest),
    }


class ConversationAggregates:
    """The processor: `apply` inside the runner's transaction, `after_commit` pushes online."""

    name = "conversation_aggregates"

    def __init__(
        self,
        allowed_lateness_s: float = 3600.0,
        push: Callable[[list[dict[str, Any]]], None] | None = None,
    ):
        self.lateness = allowed_lateness_s
        self.push = push

    def setup(self, db: sqlite3.Connection) -> None:
        db.executescript(SCHEMA)

    def apply(self, db: sqlite3.Connection, batch: Sequence[tuple[int, Event]]) -> list[dict]:
        """Fold the batch's turns into their customers' state; returns the changed rows."""
        turns = [(p, e) for p, e in batch if isinstance(e, TurnRecorded | ErasureRequested)]
        if not turns:
            return []
        marks = self._watermarks(db, {p for p, e in turns if isinstance(e, TurnRecorded)})
        states = self._states(db, list({e.customer_id for _, e in turns}))
        erased: set[str] = set()
        touched: dict[str, str] = {}
        seen: dict[str, set[str]] = {}
        for partition, event in turns:
            if isinstance(event, ErasureRequested):  # the right to be forgotten, in bus order
                states.pop(event.customer_id, None)
                touched.pop(event.customer_id, None)
                seen.pop(event.customer_id, None)
                erased.add(event.customer_id)
                continue
            at = event.at.timestamp()
            newest, late = marks[partition]
            if at < newest - self.lateness:
                marks[partition] = (newest, late + 1)
                continue
            marks[partition] = (max(newest, at), late)
            state = states.setdefault(event.customer_id, {"turns": [], "intent": None})
            ids = seen.get(event.customer_id)
            if ids is None:
                ids = seen[event.customer_id] = {t[5] for t in state["turns"]}
            if event.event_id in ids:
                continue  # published twice in different envelopes: counted once
            ids.add(event.event_id)
            row = [at, event.channel, event.intent, event.sentiment, event.handoff, event.event_id]
            if not state["turns"] or at >= state["turns"][-1][0]:
                state["turns"].append(row)
            else:
                bisect.insort(state["turns"], row, key=lambda t: t[0])
            if event.intent is not None and at >= (state.get("intent_at") or 0):
                state["intent"], state["intent_at"] = event.intent, at
            touched[event.customer_id] = event.tenant
        for customer in touched:  # keep what can still count: 30 days + the lateness
            kept = states[customer]["turns"]
            cutoff = kept[-1][0] - 30 * DAY - self.lateness
            if kept[0][0] <= cutoff:
                states[customer]["turns"] = [t for t in kept if t[0] > cutoff]
        forget(db, "conversation_aggregates", erased - set(touched))
        rows = self._write(db, states, touched)
        db.executemany(
            "INSERT INTO watermarks VALUES (?, ?, ?) ON CONFLICT (partition) DO UPDATE"
            " SET newest = excluded.newest, late_turns = excluded.late_turns",
            [(p, newest, late) for p, (newest, late) in marks.items()],
        )
        return rows

    def _watermarks(self, db: sqlite3.Connection, partitions: set[int]) -> dict:
        found = dict.fromkeys(partitions, (float("-inf"), 0))
        for p, newest, late in db.execute("SELECT partition, newest, late_turns FROM watermarks"):
            if p in found:
                found[p] = (newest, late)
        return found

    def _states(self, db: sqlite3.Connection, customers: list[str]) -> dict[str, dict]:
        states = {}
        for start in range(0, len(customers), 500):
            chunk = customers[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for customer, state in db.execute(
                f"SELECT customer_id, state FROM conversation_aggregates"  # noqa: S608
                f" WHERE customer_id IN ({marks})",
                chunk,
            ):
                states[customer] = orjson.loads(state)
        return states

    def _write(self, db: sqlite3.Connection, states: dict, touched: dict[str, str]) -> list:
        rows, out = [], []
        for customer, tenant in touched.items():
            state = states[customer]
            stats = stats_of(state["turns"], state["intent"])
            stamp = datetime.fromtimestamp(state["turns"][-1][0], UTC).isoformat()
            rows.append((customer, tenant, orjson.dumps(state), stamp))
            out.append({"customer_id": customer, "event_timestamp": stamp, **stats})
        db.executemany(
            "INSERT INTO conversation_aggregates VALUES (?, ?, ?, ?)"
            " ON CONFLICT (customer_id) DO UPDATE SET tenant = excluded.tenant,"
            " state = excluded.state, event_timestamp = excluded.event_timestamp",
            rows,
        )
        return out

    def after_commit(self, changed: list[dict[str, Any]]) -> None:
        """Push the changed customers' rows online (idempotent: a row overwrites itself)."""
        if self.push is not None and changed:
            self.push(changed)


def late_turns(db: sqlite3.Connection) -> int:
    return db.execute("SELECT COALESCE(SUM(late_turns), 0) FROM watermarks").fetchone()[0]


def aggregate_rows(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Every customer's current row (computed from the kept state, as the push does)."""
    rows = db.execute("SELECT customer_id, state FROM conversation_aggregates ORDER BY 1")
    out = {}
    for customer, blob in rows:
        state = orjson.loads(blob)
        out[customer] = stats_of(state["turns"], state["intent"])
    return out


def forget(db: sqlite3.Connection, table: str, customers: set[str]) -> None:
    db.executemany(f"DELETE FROM {table} WHERE customer_id = ?",  # noqa: S608 - our names
                   [(c,) for c in sorted(customers)])  # fmt: skip
