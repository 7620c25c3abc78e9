"""The console's own copy of the events its KPIs read, kept by a bus consumer.

The console (crm/console/kpis.py `EventLog`) reads the embedded engine's sqlite log directly:
no lag, and no second copy. A JetStream stream cannot be queried by position and type like
that, so with any other engine this consumer keeps the KPI event types (turns, handoffs,
agent replies, feedback, masked messages) in the derived store, in commit order, and the
console reads that table instead: the same numbers whatever the engine. Rows commit with the
consumer's checkpoint (a redelivery is never stored twice); an erasure deletes the customer's
rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from events.codec import encode
from events.schemas import ErasureRequested, Event

# crm/console/kpis.py `TYPES` (not imported: the console depends on the streams, not the
# reverse; tests/integration/test_event_bus.py checks the two lists agree)
TYPES = frozenset({"turn.recorded", "handoff.requested", "handoff.assigned", "handoff.resolved",
                   "agent.replied", "feedback.given", "message.received"})  # fmt: skip
TABLE = "console_events"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    payload BLOB NOT NULL
);
"""


class ConsoleEvents:
    name = "console_events"

    def setup(self, db: sqlite3.Connection) -> None:
        db.executescript(SCHEMA)

    def apply(self, db: sqlite3.Connection, batch: Sequence[tuple[int, Event]]) -> list:
        for _, event in batch:
            if isinstance(event, ErasureRequested):  # deleted here, and kept as a marker
                db.execute(f"DELETE FROM {TABLE} WHERE customer_id = ?", (event.customer_id,))
                db.execute(  # so that a running console drops what it already read
                    f"INSERT OR IGNORE INTO {TABLE} (event_id, type, customer_id, payload)"
                    " VALUES (?, ?, ?, ?)",
                    (event.event_id, event.type, event.customer_id, encode(event)),
                )
            elif event.type in TYPES:
                db.execute(
                    f"INSERT OR IGNORE INTO {TABLE} (event_id, type, customer_id, payload)"
                    " VALUES (?, ?, ?, ?)",
                    (event.event_id, event.type, event.customer_id, encode(event)),
                )
        return []

    def after_commit(self, changed: list) -> None:
        """The console reads the table."""
