"""Encryption at rest for the conversation stores: one `FieldCipher` shared by every store.

The session store, web chat transcripts, the intake log (and its dead letters) and handoff
tickets keep their personal fields as `v1:<kid>:...` tokens (AES-256-GCM, crypto.py). Each value
is bound to its column (`context`) and, when the customer is known, to the customer's data key
(`<tenant>/<customer_id>`), so `scrm customers erase` crypto-shreds every copy, backups included.

Stores take `cipher=None` (plaintext, for unit tests of store mechanics) or a cipher; the
gateway, the conversation deployment and the CLI each open one with `open_cipher` and pass it
to every store they build (one vault and its caches per process).
Plaintext rows written before encryption was switched on stay readable (`open` passes them
through) and `scrm keys rotate` encrypts them.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path

from privacy.crypto import DecryptError, Keyring, KeyringError, Vault, is_token
from settings.privacy import PrivacyConfig

# How often a running process looks at the keyring file: after `scrm keys rotate` writers move
# to the new active key within this time, so rotation converges while the stores are in use.
KEYRING_CHECK_S = 1.0


class FieldCipher:
    """seal/open strings for a store; `data_key` is `tenant/customer` (or None)."""

    def __init__(self, vault: Vault, keyring_file: Path | None = None, env: str | None = None):
        self.vault = vault
        self.keyring_file = Path(keyring_file) if keyring_file else None
        self.env = env
        self._checked = time.monotonic()
        self._mtime = self._stat()
        self._lock = threading.Lock()

    def _stat(self) -> float | None:
        if self.keyring_file is None:
            return None
        with contextlib.suppress(OSError):
            return self.keyring_file.stat().st_mtime
        return None

    def _follow_rotation(self) -> None:
        """Reload the keyring when its file changed (a rotation made a new key active)."""
        now = time.monotonic()
        if self.keyring_file is None or now - self._checked < KEYRING_CHECK_S:
            return
        with self._lock:
            self._checked = now
            mtime = self._stat()
            if mtime is not None and mtime != self._mtime:
                self._mtime = mtime
                self.vault.keyring = Keyring.load(self.keyring_file, self.env)

    def seal(self, value: str, context: str, data_key: str | None = None) -> str:
        self._follow_rotation()
        return self.vault.encrypt(value, context, data_key or None)

    def prepare(self, data_keys: list[str]) -> None:
        """Create the data keys of a batch's new customers together (one commit)."""
        self.vault.ensure_customer_keys(data_keys)

    def open(self, value: str, context: str, data_key: str | None = None) -> str:
        """The plaintext; values written before encryption pass through; DecryptError when the
        customer's data key was shredded (erased) or the value was tampered with."""
        if not is_token(value):
            return value
        return self.vault.decrypt(value, context, data_key or None)

    def open_or_none(self, value: str, context: str, data_key: str | None = None) -> str | None:
        try:
            return self.open(value, context, data_key)
        except DecryptError:
            return None


def data_key(tenant: str | None, customer_id: str | None) -> str:
    """The data key of a customer in a tenant ('' when the customer is not known)."""
    if not customer_id:
        return ""
    return f"{tenant or 'default'}/{customer_id}"


def seal_opt(cipher: FieldCipher | None, value: str, context: str, key: str | None) -> str:
    return cipher.seal(value, context, key) if cipher is not None else value


def open_opt(cipher: FieldCipher | None, value: str, context: str, key: str | None) -> str:
    if cipher is None:
        if is_token(value):
            raise DecryptError(f"{context} is encrypted but this store was opened without keys")
        return value
    return cipher.open(value, context, key)


def wrapped_keys(data_keys_db: Path | None) -> int:
    """How many data keys a data-key store holds (0 when there is none)."""
    if data_keys_db is None or not Path(data_keys_db).is_file():
        return 0
    with contextlib.closing(sqlite3.connect(data_keys_db, timeout=30)) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM customer_keys").fetchone()[0]
        except sqlite3.Error:
            return 0


def load_or_create_keyring(
    path: Path, env: str | None, data_keys_db: Path | None = None
) -> Keyring:
    """The keyring (env var or file); the first process to need one creates the file.

    Creation is atomic and exclusive (hard link of a complete file), so gateway replicas and
    workers starting together all end up with the same keys. A keyring missing while data keys
    exist is an error, never a silent new key: that would orphan every encrypted value.
    """
    try:
        return Keyring.load(path, env)
    except KeyringError:
        if env and os.environ.get(env):
            raise
        if existing := wrapped_keys(data_keys_db):
            raise KeyringError(
                f"no keyring at {path} (nor ${env}) but {data_keys_db} holds {existing} data"
                " keys wrapped by one: restore the keyring; a new one would orphan them"
            ) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
    Keyring.generate().save(tmp)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return Keyring.load(path, env)


def open_cipher(root: Path, config: PrivacyConfig | None = None) -> FieldCipher:
    """The cipher of the stores under `root`, from params.yaml `privacy:` (keyring, data keys)."""
    config = config or PrivacyConfig()
    keyring_file = Path(root) / config.keyring_file
    env = config.keyring_env
    keyring = load_or_create_keyring(keyring_file, env, Path(root) / config.data_keys_db)
    vault = Vault(
        keyring, Path(root) / config.data_keys_db, reload=lambda: Keyring.load(keyring_file, env)
    )
    return FieldCipher(vault, keyring_file, env)
