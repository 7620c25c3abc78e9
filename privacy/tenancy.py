"""Which tenant owns a customer id: what object-level authorisation checks against.

Customer ids form one namespace (the Feast entity), and each id belongs to exactly one tenant.
The customers loaded from the data sets into the feature store belong to the deployment's
`default_tenant`; a customer first written through the API belongs to the writer's tenant and
is recorded here (sqlite, WAL, shared by every gateway replica on the host). Keeping the
directory apart from the feature store means a tenant check never depends on feature values.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from privacy.abac import Resource

Exists = Callable[[str], bool]


class CustomerDirectory:
    def __init__(
        self, path: Path, default_tenant: str, exists: Exists, sensitivity: int = 1
    ) -> None:
        """`exists(customer_id)`: whether the data sets (the online store) know the customer."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.default_tenant, self.exists, self.sensitivity = default_tenant, exists, sensitivity
        self.lock = threading.Lock()
        self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS customer_tenants (customer_id TEXT PRIMARY KEY,"
            " tenant TEXT NOT NULL, created TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )

    def recorded(self, customer_id: str) -> str | None:
        with self.lock:
            row = self.db.execute(
                "SELECT tenant FROM customer_tenants WHERE customer_id = ?", (customer_id,)
            ).fetchone()
        return row[0] if row else None

    def tenant_of(self, customer_id: str) -> str | None:
        """The owning tenant, or None for an unknown customer."""
        if tenant := self.recorded(customer_id):
            return tenant
        return self.default_tenant if self.exists(customer_id) else None

    def claim(self, customer_id: str, tenant: str) -> str:
        """Record `customer_id` as `tenant`'s (the owner decided before a write: a new id, the
        writer's tenant); the first record wins. Returns the recorded owner."""
        with self.lock, self.db:
            self.db.execute(
                "INSERT OR IGNORE INTO customer_tenants (customer_id, tenant) VALUES (?, ?)",
                (customer_id, tenant),
            )
        return self.recorded(customer_id) or tenant

    def resource(self, customer_id: str, tenant_if_new: str | None = None) -> Resource | None:
        """The customer as a policy resource; unknown -> None (404), unless `tenant_if_new`
        says who would own it (a write creating the customer)."""
        tenant = self.tenant_of(customer_id) or tenant_if_new
        if tenant is None:
            return None
        return Resource(
            "customer", customer_id, tenant, owner=customer_id, sensitivity=self.sensitivity
        )
