"""The feedback consumer: every judgement of a served prediction, in one table.

Explicit feedback arrives as `feedback.given` events (agents on the desk, customers on web
chat, rating keywords on WeCom/DingTalk). Implicit feedback is derived here, from the turn
events in bus order (so a replay derives the same rows): a rephrase within the window or a
handoff right after an answer (`signals.implicit_signal`), a reopen within 24 h of an agent's
resolution. Each row names the prediction it judges (`prediction_id`, the prediction-log
request id) and the model version and A/B arm that made it, filled from the served turn when
the event did not carry them. `served_turns` keeps every turn the intent model answered: the
denominators of the online experiment's outcomes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd

from crm.streams.signals import ServedTurn, implicit_signal, reopened
from events.schemas import ErasureRequested, Event, FeedbackGiven, Handoff, TurnRecorded

SCHEMA = """
CREATE TABLE IF NOT EXISTS served_turns (
    prediction_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, customer_id TEXT NOT NULL,
    at TEXT NOT NULL, model TEXT, model_version TEXT, variant TEXT, intent TEXT,
    confidence REAL, reply_kind TEXT, handoff INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    event_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, customer_id TEXT NOT NULL,
    at TEXT NOT NULL, kind TEXT NOT NULL, prediction_id TEXT, model TEXT, model_version TEXT,
    variant TEXT, predicted TEXT, label TEXT, correct INTEGER, thumbs TEXT, csat INTEGER,
    outcome TEXT, agent TEXT, source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback_last_turn (
    customer_id TEXT PRIMARY KEY, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback_resolved (
    customer_id TEXT PRIMARY KEY, at TEXT NOT NULL, prediction_id TEXT
);
"""
COLUMNS = ["event_id", "tenant", "customer_id", "at", "kind", "prediction_id", "model",
           "model_version", "variant", "predicted", "label", "correct", "thumbs", "csat",
           "outcome", "agent", "source"]  # fmt: skip
TURN_COLUMNS = ["prediction_id", "tenant", "customer_id", "at", "model", "model_version",
                "variant", "intent", "confidence", "reply_kind", "handoff"]  # fmt: skip


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="microseconds")


class FeedbackLabels:
    name = "feedback"

    def __init__(self, rephrase_window_s: float = 120.0, reopen_window_s: float = 86_400.0):
        self.rephrase_window_s, self.reopen_window_s = rephrase_window_s, reopen_window_s

    def setup(self, db: sqlite3.Connection) -> None:
        db.executescript(SCHEMA)

    def apply(self, db: sqlite3.Connection, batch: Sequence[tuple[int, Event]]) -> list:
        for _, e in batch:
            if isinstance(e, TurnRecorded):
                self._turn(db, e)
            elif isinstance(e, FeedbackGiven):
                self._explicit(db, e)
            elif isinstance(e, Handoff) and e.type == "handoff.resolved":
                last = self._last(db, e.customer_id)
                pid = last.prediction_id if last else None
                db.execute("INSERT OR REPLACE INTO feedback_resolved VALUES (?,?,?)",
                           (e.customer_id, _iso(e.at), pid))  # fmt: skip
            elif isinstance(e, ErasureRequested):
                for table in ("served_turns", "feedback", "feedback_last_turn",
                              "feedback_resolved"):  # fmt: skip
                    db.execute(f"DELETE FROM {table} WHERE customer_id = ?", (e.customer_id,))
        return []

    def after_commit(self, changed: list) -> None:
        """Nothing leaves the transaction: the tables are what the snapshot reads."""

    # --- turns and what they imply ---------------------------------------------------------
    def _turn(self, db: sqlite3.Connection, e: TurnRecorded) -> None:
        previous = self._last(db, e.customer_id)
        signal = implicit_signal(previous, e.at, e.handoff, self.rephrase_window_s)
        if signal and previous is not None:
            self._implicit(db, e, signal, previous.prediction_id)
        row = db.execute(
            "SELECT at, prediction_id FROM feedback_resolved WHERE customer_id = ?",
            (e.customer_id,),
        ).fetchone()
        if row is not None:
            if reopened(datetime.fromisoformat(row[0]), e.at, self.reopen_window_s):
                self._implicit(db, e, "reopen", row[1])
            db.execute("DELETE FROM feedback_resolved WHERE customer_id = ?", (e.customer_id,))
        if e.prediction_id:
            db.execute(
                "INSERT OR IGNORE INTO served_turns VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (e.prediction_id, e.tenant, e.customer_id, _iso(e.at), e.model,
                 e.model_version, e.variant, e.intent, e.confidence, e.reply_kind,
                 int(e.handoff)),
            )  # fmt: skip
        current = ServedTurn(e.at, e.prediction_id, e.model, e.model_version, e.variant,
                             e.intent, e.reply_kind)  # fmt: skip
        db.execute("INSERT OR REPLACE INTO feedback_last_turn VALUES (?,?)",
                   (e.customer_id, _encode(current)))  # fmt: skip

    def _implicit(
        self, db: sqlite3.Connection, e: TurnRecorded, kind: str, pid: str | None
    ) -> None:
        served = _served(db, pid)
        db.execute(
            f"INSERT OR IGNORE INTO feedback ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(COLUMNS))})",
            (f"{e.event_id}:{kind}", e.tenant, e.customer_id, _iso(e.at), kind, pid,
             served.get("model"), served.get("model_version"), served.get("variant"),
             served.get("intent"), None, 0, None, None, None, None, "implicit"),
        )  # fmt: skip

    def _explicit(self, db: sqlite3.Connection, e: FeedbackGiven) -> None:
        pid = e.prediction_id
        if pid is None and e.kind in (None, "thumbs", "csat"):  # a rating of the last answer
            last = self._last(db, e.customer_id)
            pid = last.prediction_id if last else None
        served = _served(db, pid)
        predicted = e.predicted or served.get("intent")
        kind = e.kind or ("csat" if e.csat else "thumbs" if e.thumbs else "intent_corrected")
        correct = e.correct
        if correct is None and e.label and predicted and kind.startswith("intent_"):
            correct = e.label == predicted
        db.execute(
            f"INSERT OR IGNORE INTO feedback ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(COLUMNS))})",
            (e.event_id, e.tenant, e.customer_id, _iso(e.at), kind, pid,
             e.model or served.get("model"), e.model_version or served.get("model_version"),
             e.variant or served.get("variant"), predicted, e.label,
             None if correct is None else int(correct), e.thumbs, e.csat, e.outcome, e.agent,
             e.source),
        )  # fmt: skip

    @staticmethod
    def _last(db: sqlite3.Connection, customer_id: str) -> ServedTurn | None:
        row = db.execute(
            "SELECT body FROM feedback_last_turn WHERE customer_id = ?", (customer_id,)
        ).fetchone()
        return _decode(row[0]) if row else None


def _served(db: sqlite3.Connection, prediction_id: str | None) -> dict:
    if not prediction_id:
        return {}
    row = db.execute(
        "SELECT model, model_version, variant, intent FROM served_turns WHERE prediction_id = ?",
        (prediction_id,),
    ).fetchone()
    names = ("model", "model_version", "variant", "intent")
    return dict(zip(names, row, strict=True)) if row else {}


def _encode(turn: ServedTurn) -> str:
    import json

    return json.dumps({**turn.__dict__, "at": _iso(turn.at)})


def _decode(body: str) -> ServedTurn:
    import json

    raw = json.loads(body)
    return ServedTurn(**{**raw, "at": datetime.fromisoformat(raw["at"])})


def feedback_frame(db: sqlite3.Connection) -> pd.DataFrame:
    """Every feedback row in a stable order (the same bus gives the same frame)."""
    frame = pd.read_sql_query(
        f"SELECT {', '.join(COLUMNS)} FROM feedback ORDER BY at, event_id", db
    )
    frame["csat"] = frame["csat"].astype("Int64")
    frame["correct"] = frame["correct"].astype("Int64")
    return frame


def turns_frame(db: sqlite3.Connection) -> pd.DataFrame:
    """Every turn the intent model answered, with its arm: the experiment's denominators."""
    frame = pd.read_sql_query(
        f"SELECT {', '.join(TURN_COLUMNS)} FROM served_turns ORDER BY at, prediction_id", db
    )
    frame["handoff"] = frame["handoff"].astype(bool)
    return frame


def write_frames(db: sqlite3.Connection, directory: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    directory.mkdir(parents=True, exist_ok=True)
    feedback, turns = feedback_frame(db), turns_frame(db)
    feedback.to_parquet(directory / "feedback.parquet", index=False)
    turns.to_parquet(directory / "served_turns.parquet", index=False)
    return feedback, turns
