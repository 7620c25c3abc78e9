"""Every store of the platform that keeps a customer's data, registered with privacy.

`platform_stores(settings, cipher)` is the one list `scrm keys rotate` and `scrm customers
erase` act on (privacy/stores.py): a store the application writes to but does not list here is
a store erasure would miss, so a new store is added here in the same change.

| store                         | encrypted at rest                    | erasure                 |
|-------------------------------|--------------------------------------|-------------------------|
| intake log (+ dead letters)   | message JSON, reply                  | rows deleted            |
| dialogue sessions             | whole session (history, slots)       | rows / keys deleted     |
| web chat transcripts          | each line                            | lines deleted           |
| handoff desk tickets          | whole ticket (transcript, reason)    | tickets deleted         |
| identity map                  | no (channel ids -> customer id only) | rows deleted            |
| prediction log (serving)      | no (texts masked when written)       | rows, raw or masked id  |
| offline features (parquet)    | no                                   | rows dropped, rewritten |
| Feast online store (features) | no (aggregates, no free text)        | tombstones              |

The profile table and the conversation event log are erased by privacy/erasure.py itself.
Every encrypted value is also bound to the customer's data key, which erasure shreds, so copies
in backups become unreadable as well.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from privacy.atrest import FieldCipher
from privacy.crypto import Vault
from privacy.stores import Eraser, PersonalStore, StoreRegistry
from settings import Settings


def sessions_path(settings: Settings) -> Path | None:
    session = settings.dialogue.session
    return settings.path(session.sqlite_path) if session.store == "sqlite" else None


def desk_path(settings: Settings) -> Path | None:
    desk = settings.dialogue.handoff.desk_path
    return settings.path(desk) if desk else None


def masked_forms(customer_id: str) -> set[str]:
    """How the prediction log may hold an id that looks like a number: masked when written
    (privacy/redaction.py). A masked form can be shared by other ids ("C***********"): their
    rows go too, a loss of monitoring rows accepted for the right to be forgotten."""
    from privacy.masking import LEVELS, mask_text
    from privacy.redaction import PredictionRedaction

    logged = PredictionRedaction().row({"input": customer_id, "output": None})["input"]
    return ({mask_text(customer_id, level) for level in LEVELS} | {logged}) - {customer_id}


def file_eraser(path: Path | None, opener: Callable[[], Any]) -> Eraser:
    """Erase through the store `opener` opens, if its file exists (erasure creates nothing)."""

    def erase(customer: str, tenant: str | None) -> int:
        if path is not None and not path.is_file():
            return 0
        store = opener()
        try:
            return store.erase(customer, tenant)
        finally:
            if hasattr(store, "close"):
                store.close()

    return erase


def channel_stores(settings: Settings, cipher: FieldCipher) -> list[PersonalStore]:
    """The intake log, web chat transcripts and the identity map."""
    from crm import intake
    from crm.channels import webchat, wecom_media
    from crm.channels.identity import IdentityMap
    from crm.channels.service import intake_from_settings
    from crm.channels.wecom_contacts import ContactWayStore
    from crm.channels.wecom_kf import KfStore
    from crm.marketing.sop import SopStore

    channels, channel_db = settings.channels, settings.path(settings.channels.store)
    sqlite_intake = channels.intake.backend == "sqlite"
    intake_file = settings.path(channels.intake.path) if sqlite_intake else None
    columns = tuple((intake_file, c) for c in intake.COLUMNS) if intake_file else ()
    return [
        PersonalStore(
            "intake_messages",
            file_eraser(intake_file, lambda: intake_from_settings(channels, settings.root, cipher)),
            columns,
            redis_intake_usage(settings),
        ),
        PersonalStore(
            "web_chat_lines",  # before `identities`: it erases the customer's sessions whole
            file_eraser(
                channel_db,
                lambda: webchat.ChatTranscript(
                    channel_db, sessions_of=IdentityMap(channel_db).senders
                ),
            ),  # fmt: skip
            tuple((channel_db, c) for c in webchat.COLUMNS),
        ),
        PersonalStore(  # WeCom media files (issue 28); before `identities` like the lines
            "wecom_media",
            file_eraser(channel_db, lambda: wecom_media.MediaStore(channel_db, cipher, None, None)),
            tuple((channel_db, c) for c in wecom_media.COLUMNS),
        ),
        PersonalStore("wecom_kf_sessions", file_eraser(channel_db, lambda: KfStore(channel_db))),
        PersonalStore(
            "wecom_contact_adds", file_eraser(channel_db, lambda: ContactWayStore(channel_db))
        ),
        PersonalStore("wecom_sop_tasks", file_eraser(channel_db, lambda: SopStore(channel_db))),
        PersonalStore("identities", file_eraser(channel_db, lambda: IdentityMap(channel_db))),
    ]


def dialogue_stores(settings: Settings, cipher: FieldCipher) -> list[PersonalStore]:
    """Dialogue sessions (sqlite or Redis) and the agent desk's tickets."""
    from crm.conversation import handoff, sessions

    session_file, desk = sessions_path(settings), desk_path(settings)

    class Sessions:  # the session stores erase by customer only (keys are per customer)
        def __init__(self) -> None:
            self.store = session_store(settings, cipher)

        def erase(self, customer: str, tenant: str | None) -> int:
            return self.store.erase(customer)

    class Tickets:
        def __init__(self) -> None:
            skill = settings.dialogue.handoff.default_skill
            self.desk = handoff.HandoffDesk(skill, desk, cipher)

        def erase(self, customer: str, tenant: str | None) -> int:
            return self.desk.erase(customer)

    found = [
        PersonalStore(
            "sessions",
            file_eraser(session_file, Sessions),
            tuple((session_file, c) for c in sessions.COLUMNS) if session_file else (),
            None if session_file else redis_sessions_rotation(settings),
        )
    ]
    if desk is not None:
        columns = tuple((desk, c) for c in handoff.COLUMNS)
        found.append(PersonalStore("handoff_tickets", file_eraser(desk, Tickets), columns))
    return found


def session_store(settings: Settings, cipher: FieldCipher) -> Any:
    from crm.conversation.sessions import open_session_store

    session = settings.dialogue.session
    return open_session_store(session.store, settings.root, session.sqlite_path, session.ttl_s,
                              session.key_prefix, cipher)  # fmt: skip


def redis_sessions_rotation(settings: Settings) -> Any:
    def rotate(vault: Vault) -> dict:
        from crm.conversation.sessions import RedisSessionStore

        session = settings.dialogue.session
        store = RedisSessionStore(session.store, session.ttl_s, session.key_prefix,
                                  FieldCipher(vault))  # fmt: skip
        return store.reencrypt() | {"values_by_key": store.key_usage()}

    return rotate


def redis_intake_usage(settings: Settings) -> Any:
    """The Redis intake's values per key (its stream entries cannot be rewritten: a key they
    use is never retired)."""
    intake = settings.channels.intake
    if intake.backend != "redis" or not intake.redis_url:
        return None

    def usage(vault: Vault) -> dict:
        from crm.intake.redis_stream import RedisStreamIntake

        log = RedisStreamIntake(intake.redis_url, intake.stream, cipher=FieldCipher(vault))
        return {"reencrypted": 0, "values_by_key": log.key_usage()}

    return usage


def platform_stores(settings: Settings, cipher: FieldCipher) -> StoreRegistry:
    """The registry of every store with personal data: conversation, predictions, features."""
    from features.store import erase_online, open_store
    from serving.prediction_log import erase as erase_predictions

    registry = StoreRegistry()
    for store in channel_stores(settings, cipher) + dialogue_stores(settings, cipher):
        registry.register(store)
    registry.register(PersonalStore(
        "prediction_rows", lambda customer, tenant: erase_predictions(
            settings.prediction_log, customer, masked_forms(customer))))  # fmt: skip

    def erase_offline_rows(customer: str, tenant: str | None) -> int:
        """The offline feature parquet (and the validated data it is built from)."""
        from features.erasure import erase_offline

        return erase_offline([settings.features_dir, settings.path(
            settings.data.validated_dir)], customer)  # fmt: skip

    registry.register(PersonalStore("offline_feature_rows", erase_offline_rows))

    def erase_features(customer: str, tenant: str | None) -> int:
        """Feast online rows of the customer, tombstoned (number of features blanked)."""
        if not (settings.feature_repo / "feature_store.yaml").is_file():
            return 0
        store = open_store(settings.feature_repo, settings.online_store)
        return sum(erase_online(store, customer).values())

    registry.register(PersonalStore("feast_online_features", erase_features))
    return registry
