"""What `scrm keys rotate` and `scrm customers erase` do, on the stores params.yaml names."""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crm import stores
from privacy.atrest import FieldCipher
from privacy.audit import AuditLog
from privacy.config import PrivacyConfig
from privacy.crypto import Keyring, KeyringError, Vault, rotate
from privacy.erasure import Eraser, erase_customer
from privacy.profiles import COLUMNS, ProfileStore


def encrypted_columns(config: PrivacyConfig, root: Path) -> list:
    """Every encrypted column of the platform, with its database (add new stores in
    crm/stores.py)."""
    profile = [(root / config.personal_db, column) for column in COLUMNS]
    return profile + stores.encrypted_columns(stores.PlatformStores.from_params(root))


def rotate_keys(config: PrivacyConfig, root: Path, new_key: bool, retire: bool) -> dict:
    return rotate(
        root / config.keyring_file,
        config.keyring_env,
        root / config.data_keys_db,
        encrypted_columns(config, root),
        new_key=new_key,
        retire=retire,
        extra=stores.redis_rotation(stores.PlatformStores.from_params(root)),
    )


def erase(
    config: PrivacyConfig,
    root: Path,
    event_log: Path,
    customer_id: str,
    tenant: str | None = None,
    actor: str | None = None,
    erasers: Mapping[str, Eraser] | None = None,
) -> dict[str, Any]:
    try:
        keyring = Keyring.load(root / config.keyring_file, config.keyring_env)
    except KeyringError:
        # Nothing was ever encrypted; shredding only deletes data-key rows, no master key needed.
        keyring = Keyring.generate()
    vault = Vault(keyring, root / config.data_keys_db)
    profiles = ProfileStore(vault, root / config.personal_db)
    if erasers is None:  # every conversation store, the prediction log and Feast online rows
        erasers = stores.erasers(stores.PlatformStores.from_params(root), FieldCipher(vault))
    return erase_customer(
        customer_id,
        profiles=profiles,
        event_log=event_log,
        audit=AuditLog(root / config.audit_db),
        actor=actor or f"cli:{getpass.getuser()}",
        actor_tenant=tenant or "platform",
        tenant=tenant,
        erasers=erasers,
    )
