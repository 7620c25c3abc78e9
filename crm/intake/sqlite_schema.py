"""The sqlite intake log's tables, their migration from older files, and its transactions."""

from __future__ import annotations

import sqlite3
import threading

SCHEMA = """
CREATE TABLE IF NOT EXISTS intake (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  channel TEXT NOT NULL,
  message_id TEXT NOT NULL,
  message TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  due REAL NOT NULL,          -- pending: not before (backoff); processing: lease expiry
  owner TEXT,
  last_error TEXT,
  reply TEXT,
  accepted_at REAL NOT NULL,
  done_at REAL,
  tenant TEXT NOT NULL DEFAULT 'default',
  customer_id TEXT,
  data_key TEXT NOT NULL DEFAULT '',
  UNIQUE (channel, message_id)
);
CREATE INDEX IF NOT EXISTS intake_due ON intake(state, due);
CREATE TABLE IF NOT EXISTS dead_letters (
  seq INTEGER PRIMARY KEY,
  channel TEXT NOT NULL,
  message_id TEXT NOT NULL,
  message TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  last_error TEXT,
  dead_at REAL NOT NULL,
  tenant TEXT NOT NULL DEFAULT 'default',
  customer_id TEXT,
  data_key TEXT NOT NULL DEFAULT ''
);
"""
# Files written before the tenant/customer columns existed get them on open.
ADDED = {
    "tenant": "TEXT NOT NULL DEFAULT 'default'",
    "customer_id": "TEXT",
    "data_key": "TEXT NOT NULL DEFAULT ''",
}
INDEXES = """
CREATE INDEX IF NOT EXISTS intake_tenant ON intake(tenant, state);
CREATE INDEX IF NOT EXISTS intake_customer ON intake(customer_id);
"""


def migrate(db: sqlite3.Connection) -> None:
    for table in ("intake", "dead_letters"):
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for column, kind in ADDED.items():
            if column not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    db.executescript(INDEXES)


INSERT = (
    "INSERT OR IGNORE INTO intake(channel, message_id, message, state, attempts, due, owner,"
    " accepted_at, tenant, customer_id, data_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class Immediate:
    """`BEGIN IMMEDIATE` ... COMMIT under the connection lock (rollback on error)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock):
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.db

    def __exit__(self, kind, value, traceback) -> None:
        try:
            self.db.execute("ROLLBACK" if kind else "COMMIT")
        finally:
            self.lock.release()
