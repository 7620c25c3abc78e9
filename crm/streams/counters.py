"""Analytics counters: events per tenant, type and UTC day (for the console and monitoring).

Counting is not idempotent on its own; it is here because the increments commit with the
consumer's checkpoint (events.checkpoint): a redelivered event is never counted twice.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence

from events.schemas import Event

SCHEMA = """
CREATE TABLE IF NOT EXISTS event_counts (
    tenant TEXT NOT NULL, type TEXT NOT NULL, day TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (tenant, type, day)
);
"""


class AnalyticsCounters:
    name = "analytics_counters"

    def setup(self, db: sqlite3.Connection) -> None:
        db.executescript(SCHEMA)

    def apply(self, db: sqlite3.Connection, batch: Sequence[tuple[int, Event]]) -> list:
        counts = Counter((e.tenant, e.type, e.at.date().isoformat()) for _, e in batch)
        db.executemany(
            "INSERT INTO event_counts VALUES (?, ?, ?, ?) ON CONFLICT (tenant, type, day)"
            " DO UPDATE SET count = count + excluded.count",
            [(*key, n) for key, n in counts.items()],
        )
        return []

    def after_commit(self, changed: list) -> None:
        """Counters are read from the table."""


def counts(db: sqlite3.Connection, tenant: str | None = None) -> dict[str, int]:
    """Events by type (all days), for one tenant or all."""
    query = "SELECT type, SUM(count) FROM event_counts"
    rows = db.execute(query + (" WHERE tenant = ? GROUP BY type" if tenant else " GROUP BY type"),
                      (tenant,) if tenant else ())  # fmt: skip
    return dict(rows.fetchall())
