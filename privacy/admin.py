"""What `scrm keys rotate` and `scrm customers erase` do, on the stores registered with them."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

from privacy.audit import AuditLog
from privacy.crypto import Keyring, KeyringError, Vault
from privacy.erasure import erase_customer
from privacy.profiles import COLUMNS, ProfileStore
from privacy.rotation import rotate
from privacy.stores import StoreRegistry
from settings.privacy import PrivacyConfig


def encrypted_columns(config: PrivacyConfig, root: Path, registry: StoreRegistry) -> list:
    """Every encrypted column: the profile table's and those of the registered stores."""
    profile = [(root / config.personal_db, column) for column in COLUMNS]
    return profile + registry.encrypted_columns()


def rotate_keys(
    config: PrivacyConfig, root: Path, registry: StoreRegistry, new_key: bool, retire: bool
) -> dict:
    return rotate(
        root / config.keyring_file,
        config.keyring_env,
        root / config.data_keys_db,
        encrypted_columns(config, root, registry),
        new_key=new_key,
        retire=retire,
        extra=registry.reencrypt_others,
    )


def vault_of(config: PrivacyConfig, root: Path) -> Vault:
    """The vault erasure shreds data keys in (no master key needed to delete key rows)."""
    try:
        keyring = Keyring.load(root / config.keyring_file, config.keyring_env)
    except KeyringError:
        # Nothing was ever encrypted; shredding only deletes data-key rows, no master key needed.
        keyring = Keyring.generate()
    return Vault(keyring, root / config.data_keys_db)


def audit_key(config: PrivacyConfig, root: Path, vault: Vault) -> bytes | None:
    """The audit chain's MAC key, when a real keyring exists (never under a throwaway one)."""
    has_keyring = (root / config.keyring_file).is_file() or bool(
        config.keyring_env and os.environ.get(config.keyring_env)
    )
    return vault.system_secret("audit-chain") if has_keyring else None


def erase(
    config: PrivacyConfig,
    root: Path,
    event_log: Path,
    customer_id: str,
    registry: StoreRegistry,
    tenant: str | None = None,
    actor: str | None = None,
    vault: Vault | None = None,
) -> dict[str, Any]:
    """Erase the customer from the profile table, the event log and every registered store."""
    vault = vault or vault_of(config, root)
    profiles = ProfileStore(vault, root / config.personal_db)
    return erase_customer(
        customer_id,
        profiles=profiles,
        event_log=event_log,
        audit=AuditLog(root / config.audit_db, key=audit_key(config, root, vault)),
        actor=actor or f"cli:{getpass.getuser()}",
        actor_tenant=tenant or "platform",
        tenant=tenant,
        erasers=registry.erasers(),
    )
