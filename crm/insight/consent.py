"""ConsentLedger: a stream processor keeping each customer's latest consent per purpose
(consent.changed events), for the 360 profile; an erasure request forgets the customer.

Idempotent by construction (an upsert keyed by customer and purpose, the later event time
wins), and committed with the consumer's checkpoint like every processor's effect.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS consent_state (
    tenant TEXT NOT NULL, customer_id TEXT NOT NULL, purpose TEXT NOT NULL,
    granted INTEGER NOT NULL, at TEXT NOT NULL, source TEXT NOT NULL,
    PRIMARY KEY (tenant, customer_id, purpose)
);
"""


class ConsentLedger:
    name = "consent_ledger"

    def setup(self, db: sqlite3.Connection) -> None:
        db.executescript(SCHEMA)

    def apply(self, db: sqlite3.Connection, batch: Sequence[tuple[int, Any]]) -> list:
        for _, event in batch:
            if event.type == "consent.changed":
                db.execute(
                    "INSERT INTO consent_state VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT "
                    "(tenant, customer_id, purpose) DO UPDATE SET granted = excluded.granted, "
                    "at = excluded.at, source = excluded.source WHERE excluded.at >= at",
                    (event.tenant, event.customer_id, event.purpose, int(event.granted),
                     event.at.isoformat(), event.source),
                )  # fmt: skip
            elif event.type == "erasure.requested":
                db.execute(
                    "DELETE FROM consent_state WHERE tenant = ? AND customer_id = ?",
                    (event.tenant, event.customer_id),
                )
        return []

    def after_commit(self, changed: list) -> None:
        """The state is read from the table."""


def consent_of(derived_db: Path | None, tenant: str, customer_id: str) -> list[dict[str, Any]]:
    """The customer's consent per purpose ([] when nothing was recorded)."""
    if derived_db is None or not derived_db.is_file():
        return []
    db = sqlite3.connect(f"file:{derived_db}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT purpose, granted, at, source FROM consent_state WHERE tenant = ? AND "
            "customer_id = ? ORDER BY purpose",
            (tenant, customer_id),
        ).fetchall()
    except sqlite3.OperationalError:  # the ledger never ran here
        return []
    finally:
        db.close()
    return [{"purpose": p, "granted": bool(g), "at": a, "source": s} for p, g, a, s in rows]
