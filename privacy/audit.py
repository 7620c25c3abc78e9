"""Append-only, hash-chained audit trail of access to personal data (PIPL accountability).

Each entry records who (subject, tenant, role) did what (action, resource, fields) under which
policy decision (effect, rule, purpose), and when. Entries chain: `hash = sha256(prev_hash +
entry)`, so editing, deleting or reordering any row breaks `verify()` from that row on. The
class has no update or delete method and sqlite triggers refuse UPDATE/DELETE, so tampering
needs deliberate schema surgery, which the chain then reveals. Entries never hold raw values:
only field names, and free text is masked.

With a `key` (the gateway and the CLI pass a platform secret wrapped by the master key:
`Vault.system_secret("audit-chain")`), each link is HMAC-SHA256 instead of a bare SHA-256, so
someone who can write the file but not read the keys cannot rebuild a valid chain after
tampering. A keyed log verifies only with the key, and every entry must be keyed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from privacy.masking import mask_for_logs

GENESIS = "0" * 64
COLUMNS = (
    "seq", "at", "actor", "actor_tenant", "actor_role", "action", "resource_type",
    "resource_id", "resource_tenant", "fields", "effect", "rule", "purpose", "detail",
)  # fmt: skip


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str = ""


def entry_hash(prev_hash: str, entry: dict[str, Any], key: bytes | None = None) -> str:
    canonical = json.dumps({c: entry[c] for c in COLUMNS}, sort_keys=True, ensure_ascii=False)
    message = (prev_hash + canonical).encode()
    if key is not None:
        return "hmac:" + hmac.new(key, message, hashlib.sha256).hexdigest()
    return hashlib.sha256(message).hexdigest()


class AuditLog:
    def __init__(self, path: Path, key: bytes | None = None):
        self.path = Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS audit (
                    seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL,
                    actor_tenant TEXT NOT NULL, actor_role TEXT NOT NULL, action TEXT NOT NULL,
                    resource_type TEXT NOT NULL, resource_id TEXT, resource_tenant TEXT,
                    fields TEXT NOT NULL, effect TEXT NOT NULL, rule TEXT NOT NULL,
                    purpose TEXT, detail TEXT NOT NULL, prev_hash TEXT NOT NULL,
                    hash TEXT NOT NULL);
                CREATE INDEX IF NOT EXISTS audit_by_tenant ON audit (resource_tenant, at);
                CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
                BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
                CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
                BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
                """
            )

    def connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        return db

    def record(
        self,
        *,
        actor: str,
        actor_tenant: str,
        actor_role: str,
        action: str,
        resource_type: str,
        resource_id: str | None,
        resource_tenant: str | None,
        effect: str,
        rule: str,
        purpose: str | None = None,
        fields: list[str] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append one entry (serialised with BEGIN IMMEDIATE so the chain never forks)."""
        detail_text = mask_for_logs(json.dumps(detail or {}, ensure_ascii=False, sort_keys=True))
        entry = {
            "at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "actor": actor,
            "actor_tenant": actor_tenant,
            "actor_role": actor_role,
            "action": action,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "resource_tenant": resource_tenant,
            "fields": json.dumps(sorted(fields or [])),
            "effect": effect,
            "rule": rule,
            "purpose": purpose,
            "detail": detail_text,
        }
        db = self.connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            last = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            entry["seq"] = (last["seq"] + 1) if last else 1
            entry["prev_hash"] = last["hash"] if last else GENESIS
            entry["hash"] = entry_hash(entry["prev_hash"], entry, self.key)
            names = (*COLUMNS, "prev_hash", "hash")
            db.execute(
                f"INSERT INTO audit ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                [entry[n] for n in names],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            db.close()
        return entry

    def verify(self) -> Verification:
        """Walk the chain; the first entry whose hash or link is wrong is reported."""
        previous, checked, expected_seq = GENESIS, 0, 1
        with self.connect() as db:
            for row in db.execute("SELECT * FROM audit ORDER BY seq"):
                entry = dict(row)
                if entry["seq"] != expected_seq:
                    return Verification(False, checked, entry["seq"], "entries missing before")
                if entry["prev_hash"] != previous:
                    return Verification(False, checked, entry["seq"], "chain link broken")
                if self.key is not None and not entry["hash"].startswith("hmac:"):
                    return Verification(False, checked, entry["seq"], "entry is not keyed")
                if not hmac.compare_digest(entry_hash(previous, entry, self.key), entry["hash"]):
                    return Verification(False, checked, entry["seq"], "entry was modified")
                previous, checked, expected_seq = entry["hash"], checked + 1, expected_seq + 1
        return Verification(True, checked)

    def head(self) -> tuple[int, str]:
        """(last seq, its hash): publish it elsewhere to also detect a truncated tail."""
        with self.connect() as db:
            row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (row["seq"], row["hash"]) if row else (0, GENESIS)

    def query(
        self,
        tenant: str,
        *,
        actor: str | None = None,
        resource_id: str | None = None,
        action: str | None = None,
        effect: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Entries about `tenant`'s data (a supervisor sees only their own tenant), newest
        first."""
        where, params = (
            ["(resource_tenant = ? OR (resource_tenant IS NULL AND actor_tenant = ?))"],
            [
                tenant,
                tenant,
            ],
        )
        for column, value in (
            ("actor", actor),
            ("resource_id", resource_id),
            ("action", action),
            ("effect", effect),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since:
            where.append("at >= ?")
            params.append(since.astimezone(UTC).isoformat(timespec="microseconds"))
        if until:
            where.append("at < ?")
            params.append(until.astimezone(UTC).isoformat(timespec="microseconds"))
        with self.connect() as db:
            rows = db.execute(
                f"SELECT * FROM audit WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
                [*params, max(1, min(limit, 1000))],
            ).fetchall()
        return [dict(row) | {"fields": json.loads(row["fields"])} for row in rows]
