"""Identity map: (tenant, channel, sender id) -> one customer id across channels.

A customer who writes on WeCom and later logs into web chat is one customer: the CRM id links
them, so the dialogue (keyed by customer id) continues the same session and history. The map
is sqlite: small, local and shared by the gateway and the intake worker.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from crm.channels.local_db import open_table_db
from crm.messages import InboundMessage
from privacy.ids import opaque_id


class IdentityMap:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.lock = threading.Lock()
        self.db = open_table_db(self.path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS identities (tenant TEXT NOT NULL, channel TEXT NOT NULL,"
            " sender_id TEXT NOT NULL, customer_id TEXT NOT NULL, linked_at REAL NOT NULL,"
            " PRIMARY KEY (tenant, channel, sender_id))"
        )
        self.db.execute(
            "CREATE INDEX IF NOT EXISTS identities_customer ON identities(tenant, customer_id)"
        )
        # How to reach a sender unasked (WeCom AgentID, DingTalk sessionWebhook...): the
        # vendor context of their latest message.
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS reply_routes (channel TEXT NOT NULL, sender_id TEXT NOT"
            " NULL, context TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (channel, sender_id))"
        )

    def lookup(self, tenant: str, channel: str, sender_id: str) -> str | None:
        with self.lock:
            row = self.db.execute(
                "SELECT customer_id FROM identities WHERE tenant=? AND channel=? AND sender_id=?",
                (tenant, channel, sender_id),
            ).fetchone()
        return row[0] if row else None

    def link(self, tenant: str, channel: str, sender_id: str, customer_id: str) -> None:
        """Bind a channel identity to a CRM id (a login, a bound phone): the latest bind wins."""
        with self.lock:
            self.db.execute(
                "INSERT INTO identities VALUES (?, ?, ?, ?, ?) ON CONFLICT(tenant, channel,"
                " sender_id) DO UPDATE SET customer_id=excluded.customer_id,"
                " linked_at=excluded.linked_at",
                (tenant, channel, sender_id, customer_id, time.time()),
            )

    def resolve(self, tenant: str, channel: str, sender_id: str, hint: str | None = None) -> str:
        """The customer id of a sender; `hint` (a known CRM id) links it, else one is minted."""
        if hint:
            if self.lookup(tenant, channel, sender_id) != hint:
                self.link(tenant, channel, sender_id, hint)
            return hint
        with self.lock:
            minted = f"anon-{opaque_id()}"
            self.db.execute(
                "INSERT OR IGNORE INTO identities VALUES (?, ?, ?, ?, ?)",
                (tenant, channel, sender_id, minted, time.time()),
            )
        found = self.lookup(tenant, channel, sender_id)
        assert found is not None
        return found

    def identities(self, tenant: str, customer_id: str) -> list[tuple[str, str]]:
        """Every (channel, sender id) known for a customer."""
        with self.lock:
            rows = self.db.execute(
                "SELECT channel, sender_id FROM identities WHERE tenant=? AND customer_id=?"
                " ORDER BY channel, sender_id",
                (tenant, customer_id),
            ).fetchall()
        return [tuple(row) for row in rows]

    def senders(self, channel: str, customer_id: str, tenant: str | None = None) -> list[str]:
        """The customer's sender ids on `channel` (in one tenant or all): their web chat
        sessions, whose lines from before they logged in are theirs too."""
        where = "channel = ? AND customer_id = ?" + (" AND tenant = ?" if tenant else "")
        params = (channel, customer_id, tenant) if tenant else (channel, customer_id)
        with self.lock:
            rows = self.db.execute(f"SELECT sender_id FROM identities WHERE {where}", params)
            return [row[0] for row in rows.fetchall()]

    def apply(self, message: InboundMessage, remember_route: bool = False) -> InboundMessage:
        """The message with its customer id; optionally remember how to reach the sender."""
        customer = self.resolve(
            message.tenant, message.channel, message.sender_id, message.customer_id
        )
        if remember_route and message.context:
            with self.lock:
                self.db.execute(
                    "INSERT OR REPLACE INTO reply_routes VALUES (?, ?, ?, ?)",
                    (message.channel, message.sender_id, json.dumps(message.context), time.time()),
                )
        return message.model_copy(update={"customer_id": customer})

    def route(self, channel: str, sender_id: str) -> dict[str, str]:
        with self.lock:
            row = self.db.execute(
                "SELECT context FROM reply_routes WHERE channel=? AND sender_id=?",
                (channel, sender_id),
            ).fetchone()
        return json.loads(row[0]) if row else {}

    def erase(self, customer_id: str, tenant: str | None = None) -> int:
        """Forget a customer's channel identities and reply routes (right to be forgotten)."""
        where = "customer_id = ?" + (" AND tenant = ?" if tenant else "")
        params = (customer_id, tenant) if tenant else (customer_id,)
        with self.lock:
            senders = self.db.execute(
                f"SELECT channel, sender_id FROM identities WHERE {where}", params
            ).fetchall()
            self.db.executemany(
                "DELETE FROM reply_routes WHERE channel = ? AND sender_id = ?", senders
            )
            return self.db.execute(f"DELETE FROM identities WHERE {where}", params).rowcount

    def close(self) -> None:
        self.db.close()
