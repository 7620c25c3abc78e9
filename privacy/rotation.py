"""Key rotation: a new active master key, data keys re-wrapped, every encrypted column moved.

`rotate` saves the new keyring before any value is touched, so a crash midway loses nothing:
values are then under the old or the new key, both in the keyring, and a rerun finishes. The
columns come from the stores registered with privacy (privacy/stores.py).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from privacy.crypto import VERSION, DecryptError, Keyring, Vault, is_token


@dataclass(frozen=True)
class EncryptedColumn:
    """A column of `v1:` values; `context` and `customer_key` are formats over the row's
    columns, e.g. "customer_profiles.{field}" and "{tenant}/{customer_id}"."""

    table: str
    column: str
    context: str
    customer_key: str | None = None
    # Stores that started encrypting after they had data: rotation also encrypts the plaintext
    # values written before (anything not starting with `v1:`).
    encrypt_plaintext: bool = False

    def owner(self, row: dict) -> str | None:
        """The row's data key; an empty one (or `tenant/` with no customer) means none."""
        if not self.customer_key:
            return None
        key = self.customer_key.format(**row)
        return None if not key or key.endswith("/") or key == "None" else key


@dataclass
class RotationReport:
    table: str
    column: str
    reencrypted: int = 0
    # values of erased customers: left as they are (already shredded)
    unreadable_rows: set[int] = field(default_factory=set)

    @property
    def unreadable(self) -> int:
        return len(self.unreadable_rows)


def reencrypt_column(
    vault: Vault, db_path: Path, spec: EncryptedColumn, batch: int = 200
) -> RotationReport:
    """Move every value of `spec` to the active key, in small committed batches.

    Each update is compare-and-swap on the old ciphertext, so a row a writer changed meanwhile
    is never overwritten with stale data (it was written with the active key anyway). Readers
    are never blocked for long and can read both old and new values during the run.
    """
    report = RotationReport(spec.table, spec.column)
    while True:  # passes until one finds nothing: catches rows an old-key writer added meanwhile
        moved = reencrypt_pass(vault, db_path, spec, batch, report)
        if moved == 0:
            return report


def reencrypt_pass(
    vault: Vault, db_path: Path, spec: EncryptedColumn, batch: int, report: RotationReport
) -> int:
    prefix = f"{VERSION}:{vault.keyring.active}:%"
    cursor, moved = 0, 0
    while True:
        with sqlite3.connect(db_path, timeout=30) as db:  # one short transaction per batch
            db.row_factory = sqlite3.Row
            which = "IS NOT NULL" if spec.encrypt_plaintext else "LIKE 'v1:%'"
            rows = db.execute(
                f"SELECT rowid AS _rowid, * FROM {spec.table} WHERE rowid > ?"
                f" AND {spec.column} {which} AND {spec.column} NOT LIKE ?"
                " ORDER BY rowid LIMIT ?",
                (cursor, prefix, batch),
            ).fetchall()
            if not rows:
                return moved
            cursor = rows[-1]["_rowid"]
            for row in rows:
                context = spec.context.format(**dict(row))
                customer = spec.owner(dict(row))
                old = row[spec.column]
                if row["_rowid"] in report.unreadable_rows:
                    continue
                try:
                    plain = vault.decrypt(old, context, customer) if is_token(old) else old
                except DecryptError:
                    report.unreadable_rows.add(row["_rowid"])
                    continue
                count = db.execute(
                    f"UPDATE {spec.table} SET {spec.column} = ? WHERE rowid = ?"
                    f" AND {spec.column} = ?",
                    (vault.encrypt(plain, context, customer), row["_rowid"], old),
                ).rowcount
                moved += count
                report.reencrypted += count


def count_by_key(db_path: Path, spec: EncryptedColumn) -> dict[str, int]:
    """How many values each key id encrypts (a key may be retired when it counts zero)."""
    with sqlite3.connect(db_path, timeout=30) as db:
        values = db.execute(
            f"SELECT {spec.column} FROM {spec.table} WHERE {spec.column} LIKE 'v1:%'"
        ).fetchall()
    counts: dict[str, int] = {}
    for (value,) in values:
        kid = value.split(":", 2)[1]
        counts[kid] = counts.get(kid, 0) + 1
    return counts


def table_exists(db_path: Path, table: str) -> bool:
    with sqlite3.connect(db_path, timeout=30) as db:
        found = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
    return found is not None


def rotate(
    keyring_file: Path,
    env: str | None,
    keys_db: Path,
    columns: list[tuple[Path, EncryptedColumn]],
    new_key: bool = True,
    retire: bool = False,
    batch: int = 200,
    extra: Callable[[Vault], dict[str, dict]] | None = None,
) -> dict:
    """`scrm keys rotate`: new active key, re-wrap data keys, re-encrypt every column.

    The new keyring is saved before any value is touched, so a crash midway loses nothing:
    values are then under the old or the new key, both in the keyring, and a rerun finishes.
    With the keyring in the environment variable, rotation moves values to its active key
    (add the new key there first). `retire` drops keys no value uses any more (file only;
    do it once every server has reloaded the keyring).
    """
    from_env = bool(env and os.environ.get(env))
    created = False
    if from_env:
        keyring = Keyring.load(None, env)
    elif keyring_file.is_file():
        keyring = Keyring.load(keyring_file, None)
    else:
        keyring, created = Keyring.generate(), True
    if new_key and not from_env and not created:
        keyring.add()
    if not from_env:
        keyring.save(keyring_file)
    vault = Vault(keyring, keys_db)
    result: dict = {"active": keyring.active, "keyring": env if from_env else str(keyring_file)}
    result["data_keys_rewrapped"] = vault.rewrap_customer_keys()
    usage = count_by_key(keys_db, EncryptedColumn("customer_keys", "wrapped", "dek"))
    for db_path, spec in columns:
        if not db_path.is_file() or not table_exists(db_path, spec.table):
            continue
        report = reencrypt_column(vault, db_path, spec, batch)
        result[f"{spec.table}.{spec.column}"] = {
            "reencrypted": report.reencrypted,
            "unreadable_erased": report.unreadable,
        }
        for kid, count in count_by_key(db_path, spec).items():
            usage[kid] = usage.get(kid, 0) + count
    # Stores that are not sqlite columns (Redis): {name: {..., "values_by_key": {kid: n}}}.
    for name, report in (extra(vault) if extra else {}).items():
        for kid, count in report.pop("values_by_key", {}).items():
            usage[kid] = usage.get(kid, 0) + count
        result[name] = report
    result["values_by_key"] = usage
    if retire and not from_env:
        unused = [k for k in keyring.keys if k != keyring.active and not usage.get(k)]
        for kid in unused:
            del keyring.keys[kid]
        keyring.save(keyring_file)
        result["retired"] = unused
    return result
