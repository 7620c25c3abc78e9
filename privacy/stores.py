"""How the stores that hold personal data reach erasure and key rotation: they register.

Privacy is a leaf: it imports no store. Each part of the platform that keeps a customer's data
(the conversation stores, the prediction log, the feature store...) describes it as a
`PersonalStore` and the caller registers it (crm/stores.py lists the platform's); `scrm keys
rotate` and `scrm customers erase` then reach every registered store, and a store that never
registered is one a test of erasure finds (tests search every store after an erasure).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from privacy.crypto import Vault
from privacy.rotation import EncryptedColumn

# (customer_id, tenant or None for every tenant) -> rows or values removed
Eraser = Callable[[str, str | None], int]


@dataclass(frozen=True)
class PersonalStore:
    """One store with personal data: how to erase a customer from it and, if it encrypts,
    which sqlite columns rotation re-encrypts or how it re-encrypts itself."""

    name: str
    erase: Eraser
    columns: tuple[tuple[Path, EncryptedColumn], ...] = ()
    reencrypt: Callable[[Vault], dict] | None = None


class StoreRegistry:
    def __init__(self) -> None:
        self.stores: dict[str, PersonalStore] = {}

    def register(self, store: PersonalStore) -> None:
        if store.name in self.stores:
            raise ValueError(f"a store named {store.name!r} is registered already")
        self.stores[store.name] = store

    def erasers(self) -> dict[str, Eraser]:
        return {name: store.erase for name, store in self.stores.items()}

    def encrypted_columns(self) -> list[tuple[Path, EncryptedColumn]]:
        return [column for store in self.stores.values() for column in store.columns]

    def reencrypt_others(self, vault: Vault) -> dict[str, dict]:
        """Rotation of the stores that are not sqlite columns (Redis, ...), by name."""
        return {
            name: store.reencrypt(vault)
            for name, store in self.stores.items()
            if store.reencrypt is not None
        }
