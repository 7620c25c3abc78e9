"""Right to be forgotten (PIPL art. 47): remove or crypto-shred a customer across stores.

Stores covered: the encrypted profile table (rows deleted, data keys shredded, so copies in
backups are unreadable too), any other value bound to the customer's data keys (shredded), and
the conversation event log of features/conversations.py (rows deleted: that log is otherwise
append-only, erasure is its one legal exception). The act itself is recorded in the audit log
(the customer id and counts only, no personal values).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from privacy.audit import AuditLog
from privacy.profiles import ProfileStore
from privacy.stores import Eraser


def erase_events(event_log: Path, customer_id: str) -> int:
    if not Path(event_log).is_file():
        return 0
    with sqlite3.connect(event_log, timeout=30) as db:
        exists = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
        ).fetchone()
        if not exists:
            return 0
        return db.execute("DELETE FROM events WHERE customer_id = ?", (customer_id,)).rowcount


def erase_customer(
    customer_id: str,
    *,
    profiles: ProfileStore,
    event_log: Path,
    audit: AuditLog,
    actor: str,
    actor_tenant: str,
    tenant: str | None = None,
    erasers: Mapping[str, Eraser] | None = None,
) -> dict[str, Any]:
    """Erase `customer_id` (in `tenant`, or in every tenant); returns what was removed.

    `erasers` plugs in other stores (sessions, channel transcripts, identity map): name ->
    `f(customer_id, tenant) -> rows removed`; their counts join the result and the audit entry.
    """
    tenants = [tenant] if tenant else profiles.tenants_of(customer_id)
    if tenant:
        keys = int(profiles.vault.shred(f"{tenant}/{customer_id}"))
    else:
        keys = profiles.vault.shred_everywhere(customer_id)
    profile_rows = sum(profiles.erase(t, customer_id) for t in tenants)
    events = erase_events(event_log, customer_id)
    result = {
        "customer_id": customer_id,
        "tenants": tenants,
        "profile_fields_deleted": profile_rows,
        "data_keys_shredded": keys,
        "conversation_events_deleted": events,
    }
    for name, eraser in (erasers or {}).items():
        result[f"{name}_deleted"] = eraser(customer_id, tenant)
    for scope in tenants or [tenant or actor_tenant]:
        audit.record(
            actor=actor,
            actor_tenant=actor_tenant,
            actor_role="admin",
            action="customer.erase",
            resource_type="customer",
            resource_id=customer_id,
            resource_tenant=scope,
            effect="permit",
            rule="cli:scrm customers erase",
            purpose="erasure_request",
            fields=["*"],
            detail={k: v for k, v in result.items() if k != "customer_id"},
        )
    return result
