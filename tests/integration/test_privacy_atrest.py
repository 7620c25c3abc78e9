"""Encryption at rest of the conversation stores, key rotation while they are in use, erasure.

Stores are opened the way the gateway opens them (`open_cipher` on a throwaway project root with
the repo's params.yaml); the raw sqlite bytes are grepped for the personal numbers.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
import redis

from crm.channels.identity import IdentityMap
from crm.channels.service import intake_from_settings
from crm.channels.webchat import ChatTranscript
from crm.conversation.handoff import HandoffDesk
from crm.conversation.sessions import RedisSessionStore, Session, open_session_store
from crm.intake import RetryPolicy, SqliteIntake
from crm.messages import InboundMessage, Reply
from crm.stores import desk_path, platform_stores
from privacy import admin, atrest
from privacy.audit import AuditLog
from privacy.crypto import DecryptError, Keyring, is_token
from privacy.scan import scan_text
from settings import Settings, load_settings
from settings.channels import ChannelSettings
from settings.dialogue import DialogueConfig
from settings.privacy import PrivacyConfig
from tests.conftest import REPO

PHONE, CARD, ID = "13912345678", "6222020200112230", "11010519491231002X"
TEXT = f"我的手机{PHONE}，卡号{CARD}，身份证{ID}"


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def fresh_cipher(root: Path) -> atrest.FieldCipher:
    """A cipher of another process (nothing cached)."""
    return atrest.open_cipher(root, PrivacyConfig())


class Stores:
    """Where the project at `root` keeps its conversation stores (from its settings)."""

    def __init__(self, root: Path):
        self.settings: Settings = load_settings(root, environ={})
        self.channels, self.dialogue = self.settings.channels, self.settings.dialogue
        self.channel_db = self.settings.path(self.channels.store)
        self.intake_path = self.settings.path(self.channels.intake.path)
        self.desk_path = desk_path(self.settings)


def erase(root: Path, customer: str) -> dict:
    """`scrm customers erase` as the CLI runs it: every registered store."""
    stores = Stores(root)
    vault = admin.vault_of(stores.settings.privacy, root)
    registry = platform_stores(stores.settings, atrest.FieldCipher(vault))
    event_log = root / "data/events/conversations.db"
    return admin.erase(PrivacyConfig(), root, event_log, customer, registry, vault=vault)


def rotate(root: Path, new_key: bool, retire: bool) -> dict:
    stores = Stores(root)
    registry = platform_stores(stores.settings, fresh_cipher(root))
    return admin.rotate_keys(PrivacyConfig(), root, registry, new_key, retire)


def message(customer: str, n: int, tenant: str = "acme", text: str = TEXT) -> InboundMessage:
    return InboundMessage(
        tenant=tenant,
        channel="web_chat",
        sender_id=f"s-{customer}",
        customer_id=customer,
        text=text,
        message_id=f"{customer}-{n}",
    )


def populate(root: Path, cipher: atrest.FieldCipher, customer: str, tenant: str = "acme") -> dict:
    """One customer's data in every conversation store, as the gateway writes it."""
    stores = Stores(root)
    identity = IdentityMap(stores.channel_db)
    identity.link(tenant, "web_chat", f"s-{customer}", customer)
    intake = intake_from_settings(stores.channels, root, cipher)
    accepted = intake.append(message(customer, 1, tenant), "gateway")
    intake.complete(accepted.ref, Reply(text=f"已记录 {PHONE}"))
    intake.append(message(customer, 2, tenant))
    transcript = ChatTranscript(
        stores.channel_db,
        cipher,
        lambda sid: atrest.data_key(tenant, identity.lookup(tenant, "web_chat", sid)),
    )
    transcript.add(f"s-{customer}", "customer", TEXT, f"{customer}-1")
    session = open_session_store(
        "sqlite", root, stores.dialogue.session.sqlite_path, 600, "", cipher
    )
    state = Session(f"customer:{customer}", customer, "web_chat", f"s-{customer}")
    state.add("customer", TEXT, 20)
    state.flow = {"name": "card_loss", "slots": {"card": CARD}}
    session.put(state)
    desk = HandoffDesk("general", stores.desk_path, cipher)
    ticket = desk.open(f"customer:{customer}", "general", "requested", transcript=[{"text": TEXT}])
    return {
        "intake": intake,
        "transcript": transcript,
        "session": session,
        "desk": desk,
        "ticket": ticket.id,
        "identity": identity,
    }


def read_back(root: Path, cipher: atrest.FieldCipher, customer: str, handles: dict) -> None:
    """Every store returns the plaintext through its public interface."""
    stores = Stores(root)
    intake = intake_from_settings(stores.channels, root, cipher)
    assert intake.status("web_chat", f"{customer}-1")["reply"]["text"] == f"已记录 {PHONE}"
    claimed = [c for c in intake.claim("test", 100) if c.message.customer_id == customer]
    assert claimed and all(c.message.text == TEXT for c in claimed)
    for item in claimed:
        intake.complete(item.ref, None)
    transcript = ChatTranscript(stores.channel_db, cipher)
    assert [line["text"] for line in transcript.recent(f"s-{customer}")] == [TEXT]
    session = open_session_store(
        "sqlite", root, stores.dialogue.session.sqlite_path, 600, "", cipher
    )
    got = session.get(f"customer:{customer}")
    assert got.history[-1]["text"] == TEXT and got.flow["slots"]["card"] == CARD
    desk = HandoffDesk("general", stores.desk_path, cipher)
    assert desk.get(handles["ticket"]).transcript == [{"text": TEXT}]


def raw_findings(root: Path) -> list:
    """Raw personal numbers in the bytes of every sqlite file under the project (WAL too)."""
    found = []
    for path in sorted(root.rglob("*.db*")):
        found += scan_text(path.read_bytes().decode("utf-8", "ignore"), str(path))
    return found


def test_personal_fields_are_encrypted_at_rest_with_a_key_id(root) -> None:
    cipher = fresh_cipher(root)
    handles = populate(root, cipher, "C-1")
    read_back(root, fresh_cipher(root), "C-1", handles)
    assert raw_findings(root) == []
    stores = Stores(root)
    with sqlite3.connect(stores.intake_path) as db:
        body, tenant, key = db.execute(
            "SELECT message, tenant, data_key FROM intake WHERE message_id = 'C-1-1'"
        ).fetchone()
    assert is_token(body) and body.split(":")[1] == "k1" and (tenant, key) == ("acme", "acme/C-1")
    # the value is bound to its column: copied into another context it does not decrypt
    with pytest.raises(DecryptError):
        cipher.open(body, "web_chat_transcript.text", key)


def test_rotation_while_in_use_reencrypts_every_store_and_retires_the_old_key(root) -> None:
    config = PrivacyConfig()
    writer = fresh_cipher(root)  # a running gateway's cipher, keyring k1
    populate(root, writer, "C-1")
    first = rotate(root, new_key=True, retire=False)
    assert first["active"] == "k2"
    for name in ("intake.message", "sessions.body", "web_chat_transcript.text", "desk.body"):
        assert first[name]["reencrypted"] >= 1, (name, first)
    # the gateway keeps running: it writes again, then follows the rotation (file watched)
    time.sleep(atrest.KEYRING_CHECK_S + 0.1)
    handles = populate(root, writer, "C-2")
    assert writer.vault.keyring.active == "k2"
    second = rotate(root, new_key=False, retire=True)
    assert second["retired"] == ["k1"], second
    assert set(second["values_by_key"]) == {"k2"}
    reader = fresh_cipher(root)
    assert set(Keyring.load(root / config.keyring_file, None).keys) == {"k2"}
    read_back(root, reader, "C-2", handles)
    stores = Stores(root)
    transcript = ChatTranscript(stores.channel_db, reader)
    assert [line["text"] for line in transcript.recent("s-C-1")] == [TEXT]  # nothing lost
    assert raw_findings(root) == []


def test_rotation_encrypts_rows_written_before_encryption(root) -> None:
    stores = Stores(root)
    plain = ChatTranscript(stores.channel_db)  # no cipher: an old plaintext store
    plain.add("s-old", "customer", TEXT)
    assert raw_findings(root)
    rotate(root, new_key=True, retire=False)
    assert raw_findings(root) == [] or all("-wal" in f.file for f in raw_findings(root))
    with sqlite3.connect(stores.channel_db) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert raw_findings(root) == []
    reader = ChatTranscript(stores.channel_db, fresh_cipher(root))
    assert reader.recent("s-old")[0]["text"] == TEXT


def test_erase_removes_the_customer_from_every_store_and_is_audited(root) -> None:
    cipher = fresh_cipher(root)
    handles = {c: populate(root, cipher, c) for c in ("C-1", "C-2")}
    result = erase(root, "C-1")
    assert result["intake_messages_deleted"] == 2
    assert result["sessions_deleted"] == 1
    assert result["web_chat_lines_deleted"] == 1
    assert result["identities_deleted"] == 1
    assert result["handoff_tickets_deleted"] == 1
    assert result["data_keys_shredded"] >= 2  # acme/C-1 (channels) and C-1 (sessions, desk)
    stores = Stores(root)
    reader = fresh_cipher(root)
    intake = intake_from_settings(stores.channels, root, cipher)
    assert intake.status("web_chat", "C-1-1") is None
    session = open_session_store(
        "sqlite", root, stores.dialogue.session.sqlite_path, 600, "", reader
    )
    assert session.get("customer:C-1") is None
    assert ChatTranscript(stores.channel_db, reader).recent("s-C-1") == []
    assert IdentityMap(stores.channel_db).lookup("acme", "web_chat", "s-C-1") is None
    with pytest.raises(Exception, match="Unknown ticket"):
        HandoffDesk("general", stores.desk_path, reader).get(handles["C-1"]["ticket"])
    read_back(root, reader, "C-2", handles["C-2"])  # the other customer is untouched
    entries = AuditLog(root / PrivacyConfig().audit_db).query("platform", action="customer.erase")
    assert entries and entries[0]["resource_id"] == "C-1"
    assert json.loads(entries[0]["detail"])["sessions_deleted"] == 1


def test_a_backup_copy_is_unreadable_once_the_customer_is_shredded(root) -> None:
    cipher = fresh_cipher(root)
    populate(root, cipher, "C-9")
    stores = Stores(root)
    backup = root / "backup-intake.db"
    with sqlite3.connect(stores.intake_path) as db, sqlite3.connect(backup) as copy:
        db.backup(copy)
    erase(root, "C-9")
    with sqlite3.connect(backup) as copy:
        body, key = copy.execute("SELECT message, data_key FROM intake LIMIT 1").fetchone()
    with pytest.raises(DecryptError, match="erased"):
        fresh_cipher(root).open(body, "intake.message", key)


def test_intake_counts_and_dead_letters_filter_by_tenant(root) -> None:
    stores = Stores(root)
    policy = RetryPolicy(max_attempts=1)
    intake = SqliteIntake(stores.intake_path, policy, cipher=fresh_cipher(root))
    intake.append(message("A-1", 1, "acme"))
    intake.append(message("G-1", 1, "globex"))
    intake.append(message("G-2", 1, "globex"))
    assert intake.counts("acme")["pending"] == 1 and intake.counts("globex")["pending"] == 2
    assert intake.counts()["pending"] == 3
    ref = intake.claim("w", 1)[0].ref
    assert intake.fail(ref, f"boom {PHONE}")  # straight to the dead letters
    letters = intake.dead_letters(tenant="acme")
    assert [d["tenant"] for d in letters] == ["acme"] and intake.dead_letters(tenant="globex") == []
    assert PHONE not in letters[0]["last_error"]  # errors are masked like logs


def redis_url() -> str:
    url = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    return url


def test_redis_sessions_are_encrypted_rotated_and_erased(root) -> None:
    url, prefix = redis_url(), f"test:atrest:{uuid.uuid4().hex}:"
    cipher = fresh_cipher(root)
    store = RedisSessionStore(url, 60, prefix, cipher)
    try:
        for customer in ("C-1", "C-2"):
            state = Session(f"customer:{customer}", customer, "wecom", customer)
            state.add("customer", TEXT, 20)
            store.put(state)
        raw = store.client.get(prefix + "customer:C-1").decode()
        assert not scan_text(raw) and json.loads(raw)["body"].startswith("v1:k1:")
        cipher.vault.keyring.add()  # k2 active (as after `scrm keys rotate`)
        assert store.reencrypt() == {"reencrypted": 2, "unreadable_erased": 0}
        assert store.key_usage() == {"k2": 2} and store.client.ttl(prefix + "customer:C-1") > 0
        assert store.get("customer:C-1").history[0]["text"] == TEXT
        assert store.erase("C-1") == 1 and store.get("customer:C-1") is None
        assert store.get("customer:C-2") is not None
    finally:
        for name in store.client.scan_iter(match=prefix + "*"):
            store.client.delete(name)


def test_redis_intake_encrypts_messages_and_erases_a_customer(root) -> None:
    from crm.intake.redis_stream import RedisStreamIntake

    cipher = fresh_cipher(root)
    intake = RedisStreamIntake(redis_url(), f"scrm:test:atrest:{uuid.uuid4().hex}", cipher=cipher)
    try:
        first = intake.append(message("C-1", 1))
        intake.append(message("C-2", 1, "globex"))
        entries = intake.redis.xrange(intake.stream)
        assert all(is_token(fields["message"]) for _, fields in entries)
        assert not scan_text(json.dumps([f for _, f in entries]))
        assert intake.counts("globex")["pending"] == 1
        claimed = {c.message.customer_id: c for c in intake.claim("w", 10)}
        assert claimed["C-1"].message.text == TEXT
        intake.complete(first.ref, Reply(text=PHONE))
        assert intake.append(message("C-1", 1)).reply.text == PHONE  # a retry gets the reply
        assert not scan_text(" ".join(intake.redis.hvals(intake.replies)))
        assert intake.erase("C-1") == 1
        assert [f["customer_id"] for _, f in intake.redis.xrange(intake.stream)] == ["C-2"]
    finally:
        intake.drop()
        intake.close()


def test_stores_opened_without_keys_refuse_encrypted_values(root) -> None:
    stores = Stores(root)
    populate(root, fresh_cipher(root), "C-1")
    keyless = ChatTranscript(stores.channel_db)
    assert keyless.recent("s-C-1") == []  # nothing readable, nothing raw
    settings = ChannelSettings()
    assert settings.intake.path == stores.channels.intake.path
    assert DialogueConfig().session.store == "sqlite"


def test_the_cli_rotates_filters_by_tenant_and_erases_the_conversation_stores(root) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    def scrm(*args: str) -> dict | list:
        result = CliRunner().invoke(app, list(args), env={"SCRM_ROOT": str(root)})
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    cipher = fresh_cipher(root)
    populate(root, cipher, "C-1", "acme")
    populate(root, cipher, "G-1", "globex")
    rotated = scrm("keys", "rotate")
    assert rotated["active"] == "k2" and rotated["intake.message"]["reencrypted"] == 4
    status = scrm("intake", "status", "--tenant", "globex")
    assert status["counts"] == {"pending": 1, "processing": 0, "done": 1, "dead": 0}
    erased = scrm("customers", "erase", "C-1", "--yes")
    assert erased["intake_messages_deleted"] == 2 and erased["sessions_deleted"] == 1
    assert erased["handoff_tickets_deleted"] == 1 and erased["web_chat_lines_deleted"] == 1
    assert scrm("intake", "status", "--tenant", "acme")["counts"]["pending"] == 0
    assert scrm("intake", "status")["counts"]["pending"] == 1


def test_erase_tombstones_the_customer_in_the_feast_online_store(pipeline_workspace, tmp_path):
    """On a copy of the materialized store: the customer's rows read back as missing, a
    neighbour's do not change."""
    import pandas as pd

    from features.store import OnlineFeatureClient

    root = tmp_path / "project"
    shutil.copytree(pipeline_workspace / "features", root / "features")
    shutil.copytree(pipeline_workspace / "data" / "feast", root / "data" / "feast")
    shutil.copy(pipeline_workspace / "params.yaml", root / "params.yaml")
    rfm = pd.read_parquet(pipeline_workspace / "data" / "features" / "customer_rfm.parquet")
    gone, kept = (str(c) for c in rfm["customer_id"].drop_duplicates().head(2))
    client = OnlineFeatureClient(root / "features", "customer_360_v1")
    neighbour = client.get(kept)
    assert client.get(gone) is not None and neighbour is not None
    result = erase(root, gone)
    assert result["feast_online_features_deleted"] > 0
    assert client.get(gone) is None
    assert client.get(kept)["recency_days"] == neighbour["recency_days"]
