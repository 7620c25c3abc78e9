"""Encrypted customer profiles: personal fields stored per tenant, each value AES-256-GCM.

The table is the "profile table" of the privacy design: one row per (tenant, customer, field),
the value encrypted and bound to the customer's data key, so erasing a customer is one key
deletion plus a row delete. Reads are always filtered by tenant (tenant isolation in data).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from privacy.crypto import DecryptError, Vault
from privacy.rotation import EncryptedColumn

TABLE = "customer_profiles"
COLUMNS = [
    EncryptedColumn(TABLE, "value", TABLE + ".{field}", customer_key="{tenant}/{customer_id}")
]


def data_key(tenant: str, customer_id: str) -> str:
    """Customer ids are only unique within a tenant, so data keys are per (tenant, customer)."""
    return f"{tenant}/{customer_id}"


class ProfileStore:
    def __init__(self, vault: Vault, db_path: Path):
        self.vault = vault
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (tenant TEXT NOT NULL, customer_id TEXT"
                " NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL, updated TEXT NOT NULL,"
                " PRIMARY KEY (tenant, customer_id, field))"
            )

    def connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")  # readers keep reading while rotation writes
        return db

    def put(self, tenant: str, customer_id: str, fields: dict[str, str]) -> None:
        now = datetime.now(UTC).isoformat()
        rows = [
            (
                tenant,
                customer_id,
                name,
                self.vault.encrypt(str(value), f"{TABLE}.{name}", data_key(tenant, customer_id)),
                now,
            )
            for name, value in fields.items()
        ]
        with self.connect() as db:
            db.executemany(f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?, ?, ?)", rows)

    def get(self, tenant: str, customer_id: str) -> dict[str, str] | None:
        """The customer's fields in `tenant`, decrypted; None if unknown there (or erased)."""
        with self.connect() as db:
            rows = db.execute(
                f"SELECT field, value FROM {TABLE} WHERE tenant = ? AND customer_id = ?",
                (tenant, customer_id),
            ).fetchall()
        if not rows:
            return None
        try:
            return {
                name: self.vault.decrypt(value, f"{TABLE}.{name}", data_key(tenant, customer_id))
                for name, value in rows
            }
        except DecryptError:
            return None

    def tenants_of(self, customer_id: str) -> list[str]:
        """Tenants holding a customer with this id."""
        with self.connect() as db:
            rows = db.execute(
                f"SELECT DISTINCT tenant FROM {TABLE} WHERE customer_id = ?", (customer_id,)
            ).fetchall()
        return [row[0] for row in rows]

    def erase(self, tenant: str, customer_id: str) -> int:
        """Delete the rows and shred the data key (values in backups become unreadable)."""
        self.vault.shred(data_key(tenant, customer_id))
        with self.connect() as db:
            return db.execute(
                f"DELETE FROM {TABLE} WHERE tenant = ? AND customer_id = ?", (tenant, customer_id)
            ).rowcount
