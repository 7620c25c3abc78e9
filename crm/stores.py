"""Where the platform keeps customers' personal data, for `scrm keys rotate` and `customers erase`.

One list, read from params.yaml (as plain YAML: serving never imports pipelines), so rotation and
erasure cannot forget a store that the gateway writes to:

| store                         | encrypted at rest                    | erasure                 |
|-------------------------------|--------------------------------------|-------------------------|
| intake log (+ dead letters)   | message JSON, reply                  | rows deleted            |
| dialogue sessions             | whole session (history, slots)       | rows / keys deleted     |
| web chat transcripts          | each line                            | lines deleted           |
| handoff desk tickets          | whole ticket (transcript, reason)    | tickets deleted         |
| identity map                  | no (channel ids -> customer id only) | rows deleted            |
| profile table (profiles.py)   | each field                           | rows deleted            |
| prediction log                | no (texts masked when written)       | customer's rows deleted |
| Feast online store            | no (aggregates, no free text)        | tombstones              |
| conversation event log        | no (counts, intents, no text)        | rows deleted            |

Every encrypted value is also bound to the customer's data key, which erasure shreds, so copies
in backups become unreadable as well.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from crm.channels.config import ChannelSettings
from crm.conversation.config import DialogueConfig
from privacy.atrest import FieldCipher
from privacy.crypto import EncryptedColumn, Vault

Eraser = Callable[[str, str | None], int]


@dataclass(frozen=True)
class PlatformStores:
    root: Path
    channels: ChannelSettings
    dialogue: DialogueConfig
    feature_repo: Path
    online_store: str
    prediction_log: Path

    @classmethod
    def from_params(cls, root: Path) -> PlatformStores:
        import os

        root = Path(root)
        params_file = root / "params.yaml"
        params = {}
        if params_file.is_file():
            params = yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}
        features = params.get("features") or {}
        serving = params.get("serving") or {}
        return cls(
            root,
            ChannelSettings(**(params.get("channels") or {})),
            DialogueConfig(**(params.get("dialogue") or {})),
            root / features.get("repo_dir", "features"),
            os.environ.get("SCRM_FEAST_ONLINE_STORE") or features.get("online_store", "sqlite"),
            root / serving.get("prediction_log", "data/predictions/predictions.db"),
        )

    @property
    def intake_path(self) -> Path:
        return self.root / self.channels.intake.path

    @property
    def channel_db(self) -> Path:
        return self.root / self.channels.store

    @property
    def sessions_path(self) -> Path | None:
        session = self.dialogue.session
        return self.root / session.sqlite_path if session.store == "sqlite" else None

    @property
    def desk_path(self) -> Path | None:
        desk = self.dialogue.handoff.desk_path
        return self.root / desk if desk else None


def encrypted_columns(stores: PlatformStores) -> list[tuple[Path, EncryptedColumn]]:
    """The sqlite columns of the conversation stores that hold encrypted values."""
    from crm.channels import webchat
    from crm.conversation import handoff, intake, sessions

    found: list[tuple[Path, EncryptedColumn]] = []
    if stores.channels.intake.backend == "sqlite":
        found += [(stores.intake_path, column) for column in intake.COLUMNS]
    found += [(stores.channel_db, column) for column in webchat.COLUMNS]
    if stores.sessions_path is not None:
        found += [(stores.sessions_path, column) for column in sessions.COLUMNS]
    if stores.desk_path is not None:
        found += [(stores.desk_path, column) for column in handoff.COLUMNS]
    return found


def redis_rotation(stores: PlatformStores) -> Callable[[Vault], dict[str, dict]]:
    """Re-encrypt the Redis session store; count the Redis intake's values per key (its stream
    entries cannot be rewritten: a key they use is never retired)."""

    def rotate(vault: Vault) -> dict[str, dict]:
        from crm.conversation.sessions import RedisSessionStore

        cipher = FieldCipher(vault)
        out: dict[str, dict] = {}
        session = stores.dialogue.session
        if session.store.startswith("redis://"):
            store = RedisSessionStore(session.store, session.ttl_s, session.key_prefix, cipher)
            out["redis_sessions"] = store.reencrypt() | {"values_by_key": store.key_usage()}
        intake = stores.channels.intake
        if intake.backend == "redis" and intake.redis_url:
            from crm.conversation.redis_intake import RedisStreamIntake

            log = RedisStreamIntake(intake.redis_url, intake.stream, cipher=cipher)
            out["redis_intake"] = {"reencrypted": 0, "values_by_key": log.key_usage()}
        return out

    return rotate


def erasers(stores: PlatformStores, cipher: FieldCipher) -> dict[str, Eraser]:
    """name -> f(customer_id, tenant) -> rows removed, for every store that exists."""
    found: dict[str, Eraser] = {}
    if stores.sessions_path is None or stores.sessions_path.is_file():
        found["sessions"] = lambda customer, tenant: erase_sessions(stores, cipher, customer)
    if stores.channels.intake.backend == "redis" or stores.intake_path.is_file():
        found["intake_messages"] = lambda customer, tenant: erase_intake(
            stores, cipher, customer, tenant
        )
    if stores.channel_db.is_file():
        found["web_chat_lines"] = lambda customer, tenant: erase_transcript(
            stores, customer, tenant
        )
        found["identities"] = lambda customer, tenant: erase_identities(stores, customer, tenant)
    if stores.desk_path is not None and stores.desk_path.is_file():
        found["handoff_tickets"] = lambda customer, tenant: erase_tickets(stores, cipher, customer)
    if stores.prediction_log.is_file():
        found["prediction_rows"] = lambda customer, tenant: erase_predictions(stores, customer)
    if (stores.feature_repo / "feature_store.yaml").is_file():
        found["feast_online_features"] = lambda customer, tenant: erase_features(stores, customer)
    return found


def erase_sessions(stores: PlatformStores, cipher: FieldCipher, customer_id: str) -> int:
    from crm.conversation.sessions import open_session_store

    session = stores.dialogue.session
    store: Any = open_session_store(
        session.store, stores.root, session.sqlite_path, session.ttl_s, session.key_prefix, cipher
    )
    return store.erase(customer_id)


def erase_intake(
    stores: PlatformStores, cipher: FieldCipher, customer_id: str, tenant: str | None
) -> int:
    from crm.channels.service import intake_from_settings

    log = intake_from_settings(stores.channels, stores.root)
    try:
        return log.erase(customer_id, tenant)
    finally:
        log.close()


def erase_transcript(stores: PlatformStores, customer_id: str, tenant: str | None) -> int:
    from crm.channels.webchat import ChatTranscript

    transcript = ChatTranscript(stores.channel_db)
    try:
        return transcript.erase(customer_id, tenant)
    finally:
        transcript.close()


def erase_identities(stores: PlatformStores, customer_id: str, tenant: str | None) -> int:
    from crm.channels.identity import IdentityMap

    identity = IdentityMap(stores.channel_db)
    try:
        return identity.erase(customer_id, tenant)
    finally:
        identity.close()


def erase_tickets(stores: PlatformStores, cipher: FieldCipher, customer_id: str) -> int:
    from crm.conversation.handoff import HandoffDesk

    desk = HandoffDesk(stores.dialogue.handoff.default_skill, stores.desk_path, cipher)
    return desk.erase(customer_id)


def erase_predictions(stores: PlatformStores, customer_id: str) -> int:
    from serving.prediction_log import erase

    return erase(stores.prediction_log, customer_id)


def erase_features(stores: PlatformStores, customer_id: str) -> int:
    """Feast online rows of the customer, tombstoned (number of features blanked)."""
    from features.store import erase_online, open_store

    store = open_store(stores.feature_repo, stores.online_store)
    return sum(erase_online(store, customer_id).values())
