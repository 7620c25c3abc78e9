"""The campaigns' durable state in one sqlite file: specs and their state, the frozen
audience, every send keyed by (campaign, step, customer), outcomes, and opt-outs.

The send key is the idempotency: a send is claimed (INSERT OR IGNORE) before the channel is
called, so a replayed launch, a resume, two replicas or a crash between claim and send never
message a customer twice for one step (at most once; a failed send stays failed and visible).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from privacy.ids import opaque_id

SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL,
    state TEXT NOT NULL, created_at TEXT NOT NULL, snapshot TEXT, snapshot_at TEXT,
    last_run TEXT
);
CREATE TABLE IF NOT EXISTS sends (
    campaign_id TEXT NOT NULL, step TEXT NOT NULL, customer_id TEXT NOT NULL,
    tenant TEXT NOT NULL, arm TEXT NOT NULL, channel TEXT, status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '', at TEXT NOT NULL,
    PRIMARY KEY (campaign_id, step, customer_id)
);
CREATE INDEX IF NOT EXISTS sends_customer ON sends (tenant, customer_id);
CREATE TABLE IF NOT EXISTS outcomes (
    campaign_id TEXT NOT NULL, customer_id TEXT NOT NULL, kind TEXT NOT NULL,
    at TEXT NOT NULL, value REAL
);
CREATE TABLE IF NOT EXISTS outcome_keys (
    campaign_id TEXT NOT NULL, customer_id TEXT NOT NULL, kind TEXT NOT NULL,
    PRIMARY KEY (campaign_id, customer_id, kind)
);
INSERT OR IGNORE INTO outcome_keys SELECT DISTINCT campaign_id, customer_id, kind FROM outcomes;
CREATE TABLE IF NOT EXISTS optouts (
    tenant TEXT NOT NULL, customer_id TEXT NOT NULL, at TEXT NOT NULL, source TEXT NOT NULL,
    PRIMARY KEY (tenant, customer_id)
);
"""


class CampaignStore:
    def __init__(self, path: Path | str = ":memory:"):
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA busy_timeout = 5000")
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()

    def _run(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self.lock:
            return self.db.execute(sql, args)

    # --- campaigns ------------------------------------------------------------------------
    def create(self, tenant: str, name: str, spec: dict[str, Any], at: datetime) -> str:
        cid = opaque_id()
        self._run(
            "INSERT INTO campaigns (id, tenant, name, spec, state, created_at) VALUES "
            "(?, ?, ?, ?, 'draft', ?)",
            (cid, tenant, name, json.dumps(spec), at.isoformat()),
        )
        return cid

    def get(self, tenant: str, campaign_id: str) -> dict[str, Any] | None:
        """A campaign of this tenant; another tenant's is None, exactly like a missing one."""
        row = self._run(
            "SELECT id, tenant, name, spec, state, created_at, snapshot, snapshot_at, "
            "last_run FROM campaigns WHERE id = ? AND tenant = ?",
            (campaign_id, tenant),
        ).fetchone()
        return _campaign(row) if row else None

    def tenant_of(self, campaign_id: str) -> str | None:
        row = self._run("SELECT tenant FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
        return row[0] if row else None

    def list(self, tenant: str) -> list[dict[str, Any]]:
        rows = self._run(
            "SELECT id, tenant, name, spec, state, created_at, snapshot, snapshot_at, "
            "last_run FROM campaigns WHERE tenant = ? ORDER BY created_at, id",
            (tenant,),
        ).fetchall()
        return [_campaign(row) for row in rows]

    def running_tenants(self) -> list[str]:
        rows = self._run("SELECT DISTINCT tenant FROM campaigns WHERE state = 'running'")
        return [tenant for (tenant,) in rows.fetchall()]

    def transition(self, tenant: str, campaign_id: str, sources: tuple[str, ...], to: str) -> bool:
        """Compare-and-set of the state: False when it was not in one of `sources`."""
        marks = ",".join("?" * len(sources))
        changed = self._run(
            f"UPDATE campaigns SET state = ? WHERE id = ? AND tenant = ? AND state IN ({marks})",
            (to, campaign_id, tenant, *sources),
        )
        return changed.rowcount == 1

    def freeze(self, campaign_id: str, members: list[str], at: datetime) -> bool:
        """The audience at send time, once: a second freeze keeps the first."""
        changed = self._run(
            "UPDATE campaigns SET snapshot = ?, snapshot_at = ? WHERE id = ? AND snapshot IS NULL",
            (json.dumps(members), at.isoformat(), campaign_id),
        )
        return changed.rowcount == 1

    def add_member(self, campaign_id: str, customer_id: str) -> bool:
        """An event-triggered campaign's member joins (once)."""
        with self.lock:
            row = self.db.execute("SELECT snapshot FROM campaigns WHERE id = ?", (campaign_id,))
            members = json.loads(row.fetchone()[0] or "[]")
            if customer_id in members:
                return False
            members.append(customer_id)
            self.db.execute(
                "UPDATE campaigns SET snapshot = ? WHERE id = ?", (json.dumps(members), campaign_id)
            )
            return True

    def save_run(self, campaign_id: str, report: dict[str, Any]) -> None:
        self._run(
            "UPDATE campaigns SET last_run = ? WHERE id = ?", (json.dumps(report), campaign_id)
        )

    # --- sends ----------------------------------------------------------------------------
    def claim(
        self,
        tenant: str,
        campaign_id: str,
        step: str,
        customer_id: str,
        arm: str,
        channel: str | None,
        status: str,
        at: datetime,
    ) -> bool:
        """True for the one caller that gets to act on (campaign, step, customer)."""
        cursor = self._run(
            "INSERT OR IGNORE INTO sends (campaign_id, step, customer_id, tenant, "
            "arm, channel, status, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (campaign_id, step, customer_id, tenant, arm, channel, status, at.isoformat()),
        )
        return cursor.rowcount == 1

    def finish(
        self, campaign_id: str, step: str, customer_id: str, status: str, reason: str = ""
    ) -> None:
        self._run(
            "UPDATE sends SET status = ?, reason = ? WHERE campaign_id = ? AND step = ? AND "
            "customer_id = ?",
            (status, reason[:200], campaign_id, step, customer_id),
        )

    def release(self, campaign_id: str, step: str, customer_id: str) -> None:
        """Give a claim back (the customer was not reachable on that channel: nothing sent)."""
        self._run(
            "DELETE FROM sends WHERE campaign_id = ? AND step = ? AND customer_id = ? AND "
            "status = 'claimed'",
            (campaign_id, step, customer_id),
        )

    def send_of(self, campaign_id: str, step: str, customer_id: str) -> dict[str, Any] | None:
        row = self._run(
            "SELECT arm, channel, status, at FROM sends WHERE campaign_id = ? AND "
            "step = ? AND customer_id = ?",
            (campaign_id, step, customer_id),
        ).fetchone()
        if row is None:
            return None
        return {
            "arm": row[0],
            "channel": row[1],
            "status": row[2],
            "at": datetime.fromisoformat(row[3]),
        }

    def sends(self, campaign_id: str) -> list[dict[str, Any]]:
        rows = self._run(
            "SELECT step, customer_id, arm, channel, status, reason, at FROM sends "
            "WHERE campaign_id = ? ORDER BY at, customer_id",
            (campaign_id,),
        ).fetchall()
        keys = ("step", "customer_id", "arm", "channel", "status", "reason", "at")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def marketing_sends(self, tenant: str, customer_id: str) -> list[tuple[datetime, str]]:
        """(time, channel) of every marketing message the customer was sent (for the caps)."""
        rows = self._run(
            "SELECT at, channel FROM sends WHERE tenant = ? AND customer_id = ? AND "
            "status = 'sent'",
            (tenant, customer_id),
        ).fetchall()
        return [(datetime.fromisoformat(at), channel) for at, channel in rows]

    # --- outcomes and opt-outs ------------------------------------------------------------
    def outcome(
        self,
        campaign_id: str,
        customer_id: str,
        kind: str,
        at: datetime,
        value: float | None = None,
    ) -> bool:
        """Kept once per (campaign, customer, kind): a replayed callback or a message sent
        twice counts once. False when it was already there."""
        with self.lock:
            claimed = self.db.execute(
                "INSERT OR IGNORE INTO outcome_keys VALUES (?, ?, ?)",
                (campaign_id, customer_id, kind),
            )
            if claimed.rowcount != 1:
                return False
            self.db.execute(
                "INSERT INTO outcomes VALUES (?, ?, ?, ?, ?)",
                (campaign_id, customer_id, kind, at.isoformat(), value),
            )
            return True

    def outcomes_of(self, campaign_id: str, customer_id: str) -> set[str]:
        rows = self._run(
            "SELECT kind FROM outcomes WHERE campaign_id = ? AND customer_id = ?",
            (campaign_id, customer_id),
        ).fetchall()
        return {kind for (kind,) in rows}

    def outcomes(self, campaign_id: str) -> list[tuple[str, str, str, float | None]]:
        """(customer, kind, ISO time, value) of every outcome of the campaign (its results)."""
        return self._run(
            "SELECT customer_id, kind, at, value FROM outcomes WHERE campaign_id = ? "
            "ORDER BY at, customer_id",
            (campaign_id,),
        ).fetchall()

    def record(self, tenant: str, customer_id: str, at: datetime, source: str) -> None:
        self._run(
            "INSERT OR IGNORE INTO optouts VALUES (?, ?, ?, ?)",
            (tenant, customer_id, at.isoformat(), source[:64]),
        )

    def opted_out(self, tenant: str, customer_id: str) -> datetime | None:
        row = self._run(
            "SELECT at FROM optouts WHERE tenant = ? AND customer_id = ?", (tenant, customer_id)
        ).fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    def close(self) -> None:
        self.db.close()


def _campaign(row: tuple) -> dict[str, Any]:
    cid, tenant, name, spec, state, created, snapshot, snapshot_at, last_run = row
    return {
        "id": cid,
        "tenant": tenant,
        "name": name,
        "spec": json.loads(spec),
        "state": state,
        "created_at": created,
        "audience_size": len(json.loads(snapshot)) if snapshot else None,
        "members": json.loads(snapshot) if snapshot else None,
        "snapshot_at": snapshot_at,
        "last_run": json.loads(last_run) if last_run else None,
    }
