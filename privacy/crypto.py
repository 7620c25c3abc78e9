"""Field encryption at rest: AES-256-GCM, key ids in every value, rotation, crypto-shredding.

A stored value reads `v1:<kid>:<base64(nonce + ciphertext)>`: the key id says which master key
(of the keyring) encrypted it, so values written before a rotation stay readable while
`reencrypt_column` moves them to the new key row by row. Personal values are additionally
bound to a per-customer secret (wrapped by the master key, one row in `customer_keys`): the
field key is HKDF(master, salt=customer secret). Deleting that row (`Vault.shred`) makes the
customer's values unreadable everywhere, including backups of the data tables.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = "v1"
KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
NONCE_BYTES = 12
DERIVED_CACHE = 4096  # derived field keys kept per process (cleared when full)
# A data key shredded by another process (`scrm customers erase`) stops working here after this.
SECRET_TTL_S = 30.0


class KeyringError(ValueError):
    """A keyring problem (missing, malformed, unknown key id); one readable line."""


class DecryptError(ValueError):
    """A value that cannot be decrypted: unknown key, tampered, or its customer was erased."""


class KeyErased(DecryptError):
    """The customer's data key is gone (erased): their values are unreadable by design."""


@dataclass
class Keyring:
    """AES-256 master keys by id, and which one encrypts new values."""

    keys: dict[str, bytes]
    active: str

    def __post_init__(self) -> None:
        for kid, key in self.keys.items():
            if not KID.match(kid):
                raise KeyringError(f"key id {kid!r} must be 1-32 letters, digits, _ or -")
            if len(key) != 32:
                raise KeyringError(f"key {kid!r} is {len(key)} bytes; AES-256 needs 32")
        if self.active not in self.keys:
            raise KeyringError(f"active key {self.active!r} is not in the keyring")

    @classmethod
    def generate(cls, kid: str = "k1") -> Keyring:
        return cls({kid: AESGCM.generate_key(bit_length=256)}, kid)

    def add(self, kid: str | None = None) -> str:
        """A fresh key, made active; returns its id (`k<n+1>` unless given)."""
        if kid is None:
            numbers = [int(k[1:]) for k in self.keys if re.fullmatch(r"k\d+", k)]
            kid = f"k{max(numbers, default=0) + 1}"
        if kid in self.keys:
            raise KeyringError(f"key id {kid!r} already exists")
        self.keys[kid] = AESGCM.generate_key(bit_length=256)
        self.__post_init__()
        self.active = kid
        return kid

    def to_json(self) -> str:
        encoded = {k: base64.b64encode(v).decode() for k, v in self.keys.items()}
        return json.dumps({"active": self.active, "keys": encoded}, indent=1)

    @classmethod
    def from_json(cls, text: str, source: str) -> Keyring:
        try:
            raw = json.loads(text)
            keys = {k: base64.b64decode(v, validate=True) for k, v in raw["keys"].items()}
            return cls(keys, raw["active"])
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise KeyringError(
                f"{source}: not a keyring ({{'active': kid, 'keys': {{kid: base64}}}}): {error}"
            ) from None

    def save(self, path: Path) -> None:
        """Written atomically, readable by the owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self.to_json())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path | None = None, env: str | None = "SCRM_PRIVACY_KEYS") -> Keyring:
        """The env var (keyring JSON) wins over the file; neither -> KeyringError."""
        if env and os.environ.get(env):
            return cls.from_json(os.environ[env], f"environment variable {env}")
        if path is not None and Path(path).is_file():
            return cls.from_json(Path(path).read_text(encoding="utf-8"), str(path))
        raise KeyringError(
            f"no encryption keys: set {env} or create {path} (scrm keys rotate creates it)"
        )


def derive(master: bytes, salt: bytes, context: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt or None, info=context.encode()
    ).derive(master)


def parse_token(token: str) -> tuple[str, bytes]:
    parts = token.split(":", 2)
    if len(parts) != 3 or parts[0] != VERSION:
        raise DecryptError("not an encrypted value (expected v1:<kid>:<data>)")
    try:
        blob = base64.b64decode(parts[2], validate=True)
    except ValueError:
        raise DecryptError("encrypted value is not valid base64") from None
    if len(blob) <= NONCE_BYTES:
        raise DecryptError("encrypted value is truncated")
    return parts[1], blob


def key_id(token: str) -> str:
    return parse_token(token)[0]


def is_token(value: object) -> bool:
    """An encrypted value (`v1:<kid>:...`), as opposed to plaintext written before encryption."""
    return isinstance(value, str) and value.startswith(VERSION + ":")


class Vault:
    """Encrypts and decrypts fields; holds the per-customer secrets in `customer_keys`.

    Keep `db_path` (the data keys) apart from the data tables and out of their long-lived
    backups: a shredded key must not survive in a backup next to the data it unlocks.
    """

    def __init__(
        self, keyring: Keyring, db_path: Path, reload: Callable[[], Keyring] | None = None
    ):
        """`reload` (e.g. `lambda: Keyring.load(file)`) is called when a value names a key id
        this process does not know yet: after `scrm keys rotate`, running servers pick up the
        new key on first sight instead of failing reads (no restart, no downtime)."""
        self.keyring = keyring
        self.reload = reload
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._secrets: dict[str, tuple[bytes, float]] = {}
        self._derived: dict[tuple[str, str, str, bytes], AESGCM] = {}
        self._lock = threading.Lock()
        with self.connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS customer_keys (customer_id TEXT PRIMARY KEY,"
                " wrapped TEXT NOT NULL, created TEXT NOT NULL)"
            )

    def connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    # -- raw AES-GCM with a key id -------------------------------------------------------
    def _aead(self, kid: str, salt: bytes, context: str, owner: str) -> AESGCM:
        """The field key of (key id, customer, column), derived once: HKDF costs ~0.1 ms, which
        would cap the intake log near 8,000 messages/s if paid on every value."""
        cache_key = (kid, owner, context, salt)
        aead = self._derived.get(cache_key)
        if aead is None:
            aead = AESGCM(derive(self.keyring.keys[kid], salt, context))
            with self._lock:
                if len(self._derived) >= DERIVED_CACHE:
                    self._derived.clear()
                self._derived[cache_key] = aead
        return aead

    def _seal(
        self, plaintext: bytes, salt: bytes, context: str, aad: bytes, owner: str = ""
    ) -> str:
        kid = self.keyring.active
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead(kid, salt, context, owner).encrypt(nonce, plaintext, aad)
        return f"{VERSION}:{kid}:{base64.b64encode(nonce + sealed).decode()}"

    def _open(self, token: str, salt: bytes, context: str, aad: bytes, owner: str = "") -> bytes:
        kid, blob = parse_token(token)
        if kid not in self.keyring.keys and self.reload is not None:
            self.keyring = self.reload()
        if kid not in self.keyring.keys:
            raise DecryptError(f"value encrypted with key {kid!r}, which is not in the keyring")
        try:
            return self._aead(kid, salt, context, owner).decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad
            )
        except InvalidTag:
            raise DecryptError("value does not decrypt (tampered or wrong context)") from None

    # -- per-customer secrets ------------------------------------------------------------
    def _customer_secret(self, customer_id: str, create: bool) -> bytes | None:
        with self._lock:
            cached = self._secrets.get(customer_id)
            if cached and time.monotonic() - cached[1] < SECRET_TTL_S:
                return cached[0]
        with self.connect() as db:
            row = db.execute(
                "SELECT wrapped FROM customer_keys WHERE customer_id = ?", (customer_id,)
            ).fetchone()
            if row is None and create:
                wrapped = self._seal(secrets.token_bytes(32), b"", "dek", customer_id.encode())
                db.execute(
                    "INSERT OR IGNORE INTO customer_keys VALUES (?, ?, ?)",
                    (customer_id, wrapped, datetime.now(UTC).isoformat()),
                )
                row = db.execute(
                    "SELECT wrapped FROM customer_keys WHERE customer_id = ?", (customer_id,)
                ).fetchone()
        if row is None:
            return None
        secret = self._open(row[0], b"", "dek", customer_id.encode())
        with self._lock:
            self._secrets[customer_id] = (secret, time.monotonic())
        return secret

    def system_secret(self, name: str) -> bytes:
        """A platform secret (audit chain MAC, chat session tokens) kept like a data key:
        random, wrapped by the master key, re-wrapped by rotation, so it outlives key
        rotation. Its id has a `:`, which no customer id has, so no erasure shreds it."""
        secret = self._customer_secret(f"__system__:{name}", create=True)
        assert secret is not None
        return secret

    def ensure_customer_keys(self, customer_ids: list[str]) -> int:
        """Create the missing data keys of many customers in one transaction (one fsync
        instead of one per new customer); returns how many were created."""
        now = time.monotonic()
        with self._lock:
            wanted = sorted(
                {c for c in customer_ids if c}
                - {c for c, (_, at) in self._secrets.items() if now - at < SECRET_TTL_S}
            )
        if not wanted:
            return 0
        with self.connect() as db:
            known = set()
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                known |= {
                    row[0]
                    for row in db.execute(
                        f"SELECT customer_id FROM customer_keys WHERE customer_id IN ({marks})",
                        chunk,
                    )
                }
            created = datetime.now(UTC).isoformat()
            rows = [
                (c, self._seal(secrets.token_bytes(32), b"", "dek", c.encode()), created)
                for c in wanted
                if c not in known
            ]
            db.executemany("INSERT OR IGNORE INTO customer_keys VALUES (?, ?, ?)", rows)
        return len(rows)

    def shred(self, customer_id: str) -> bool:
        """Destroy the customer's secret: every value bound to it becomes unreadable."""
        with self._lock:
            self._secrets.pop(customer_id, None)
            self._derived = {k: v for k, v in self._derived.items() if k[1] != customer_id}
        with self.connect() as db:
            return (
                db.execute(
                    "DELETE FROM customer_keys WHERE customer_id = ?", (customer_id,)
                ).rowcount
                > 0
            )

    # -- fields ---------------------------------------------------------------------------
    def encrypt(self, value: str, context: str, customer_id: str | None = None) -> str:
        """`context` names the column (e.g. `customer_profiles.phone`); it and the customer id
        are authenticated, so a value copied to another column or customer fails to decrypt."""
        salt = self._customer_secret(customer_id, create=True) if customer_id else b""
        aad = f"{context}|{customer_id or ''}".encode()
        return self._seal(value.encode(), salt, context, aad, customer_id or "")

    def decrypt(self, token: str, context: str, customer_id: str | None = None) -> str:
        salt = b""
        if customer_id:
            salt = self._customer_secret(customer_id, create=False)
            if salt is None:
                raise KeyErased(f"customer {customer_id}'s data key was erased")
        aad = f"{context}|{customer_id or ''}".encode()
        return self._open(token, salt, context, aad, customer_id or "").decode()

    def shred_everywhere(self, customer_id: str) -> int:
        """Shred the customer's data keys in every tenant (keys `<tenant>/<customer_id>`)."""
        with self.connect() as db:
            keys = [
                row[0]
                for row in db.execute(
                    "SELECT customer_id FROM customer_keys WHERE customer_id = ?"
                    " OR substr(customer_id, -length(?) - 1) = '/' || ?",
                    (customer_id, customer_id, customer_id),
                )
            ]
        return sum(self.shred(key) for key in keys)

    def rewrap_customer_keys(self) -> int:
        """Re-encrypt every customer secret under the active master key; returns how many."""
        moved = 0
        prefix = f"{VERSION}:{self.keyring.active}:"
        with self.connect() as db:
            rows = db.execute(
                "SELECT customer_id, wrapped FROM customer_keys WHERE wrapped NOT LIKE ?",
                (prefix + "%",),
            ).fetchall()
            for customer_id, wrapped in rows:
                secret = self._open(wrapped, b"", "dek", customer_id.encode())
                new = self._seal(secret, b"", "dek", customer_id.encode())
                moved += db.execute(
                    "UPDATE customer_keys SET wrapped = ? WHERE customer_id = ? AND wrapped = ?",
                    (new, customer_id, wrapped),
                ).rowcount
        return moved
