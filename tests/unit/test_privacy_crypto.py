"""Encryption at rest: AES-256-GCM values with key ids, rotation under load, crypto-shredding."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest

from privacy.crypto import DecryptError, Keyring, KeyringError, Vault
from privacy.profiles import COLUMNS, TABLE, ProfileStore, data_key
from privacy.rotation import rotate


@pytest.fixture
def vault(tmp_path) -> Vault:
    return Vault(Keyring.generate("k1"), tmp_path / "keys.db")


def test_values_carry_their_key_id_and_are_authenticated(vault) -> None:
    token = vault.encrypt("13812345678", "profiles.phone", "acme/c1")
    assert token.startswith("v1:k1:") and "13812345678" not in token
    assert token != vault.encrypt("13812345678", "profiles.phone", "acme/c1")  # fresh nonce
    assert vault.decrypt(token, "profiles.phone", "acme/c1") == "13812345678"
    with pytest.raises(DecryptError, match="tampered or wrong context"):
        vault.decrypt(token, "profiles.email", "acme/c1")  # moved to another column
    vault.encrypt("x", "profiles.phone", "acme/c2")
    with pytest.raises(DecryptError, match="tampered or wrong context"):
        vault.decrypt(token, "profiles.phone", "acme/c2")  # moved to another customer
    flipped = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    with pytest.raises(DecryptError):
        vault.decrypt(flipped, "profiles.phone", "acme/c1")
    with pytest.raises(DecryptError, match="not an encrypted value"):
        vault.decrypt("13812345678", "profiles.phone", "acme/c1")
    plain = vault.encrypt("session-data", "sessions.state")  # not bound to a customer
    assert vault.decrypt(plain, "sessions.state") == "session-data"


def test_keyring_from_env_wins_over_file_and_errors_are_readable(tmp_path, monkeypatch) -> None:
    file = tmp_path / "keyring.json"
    Keyring.generate("filekey").save(file)
    assert oct(file.stat().st_mode & 0o777) == "0o600"
    assert Keyring.load(file, "TEST_SCRM_KEYS").active == "filekey"
    monkeypatch.setenv("TEST_SCRM_KEYS", Keyring.generate("envkey").to_json())
    assert Keyring.load(file, "TEST_SCRM_KEYS").active == "envkey"
    monkeypatch.setenv("TEST_SCRM_KEYS", '{"active": "a", "keys": {"a": "c2hvcnQ="}}')
    with pytest.raises(KeyringError, match="is 5 bytes; AES-256 needs 32"):
        Keyring.load(file, "TEST_SCRM_KEYS")
    monkeypatch.setenv("TEST_SCRM_KEYS", "not json")
    with pytest.raises(KeyringError, match="environment variable TEST_SCRM_KEYS: not a keyring"):
        Keyring.load(file, "TEST_SCRM_KEYS")
    monkeypatch.delenv("TEST_SCRM_KEYS")
    with pytest.raises(KeyringError, match="no encryption keys"):
        Keyring.load(tmp_path / "missing.json", "TEST_SCRM_KEYS")


def test_rotation_reencrypts_everything_while_reads_and_writes_go_on(tmp_path) -> None:
    keyring_file, keys_db, data_db = tmp_path / "keyring.json", tmp_path / "k.db", tmp_path / "d.db"
    Keyring.generate("k1").save(keyring_file)
    writer_vault = Vault(Keyring.load(keyring_file, None), keys_db)  # keeps k1 active
    store = ProfileStore(writer_vault, data_db)
    expected = {}
    for i in range(120):
        fields = {"phone": f"139{i:08d}", "email": f"u{i}@example.com"}
        store.put("acme", f"c{i}", fields)
        expected[f"c{i}"] = fields

    # a server process: its own vault that reloads the keyring file on an unknown key id
    def load() -> Keyring:
        return Keyring.load(keyring_file, None)

    reader = ProfileStore(Vault(load(), keys_db, reload=load), data_db)
    done, errors, reads, writes = threading.Event(), [], [0], {}

    def read_loop() -> None:
        while not done.is_set():
            for customer, fields in list(expected.items())[::7]:
                try:
                    got = reader.get("acme", customer)
                except Exception as error:  # noqa: BLE001 - any failure is the finding
                    errors.append(repr(error))
                    continue
                if got != fields:
                    errors.append(f"{customer}: {got}")
                reads[0] += 1

    def write_loop() -> None:  # an old process still writing with k1 during the rotation
        for i in range(30):
            writes[f"w{i}"] = {"phone": f"137{i:08d}"}
            store.put("acme", f"w{i}", writes[f"w{i}"])

    threads = [threading.Thread(target=read_loop), threading.Thread(target=write_loop)]
    for thread in threads:
        thread.start()
    result = rotate(keyring_file, None, keys_db, [(data_db, c) for c in COLUMNS], batch=16)
    threads[1].join()
    rotate(keyring_file, None, keys_db, [(data_db, c) for c in COLUMNS], new_key=False)
    done.set()
    threads[0].join()

    assert errors == [] and reads[0] > 0
    assert "k2" in reader.vault.keyring.keys  # the running reader picked the new key up
    assert result["active"] == "k2" and result[f"{TABLE}.value"]["reencrypted"] >= 240
    with sqlite3.connect(data_db) as db:
        prefixes = {v[:6] for (v,) in db.execute(f"SELECT value FROM {TABLE}")}
    assert prefixes == {"v1:k2:"}
    final = ProfileStore(Vault(Keyring.load(keyring_file, None), keys_db), data_db)
    for customer, fields in {**expected, **writes}.items():
        assert final.get("acme", customer) == fields  # nothing lost
    retired = rotate(keyring_file, None, keys_db, [(data_db, c) for c in COLUMNS],
                     new_key=False, retire=True)  # fmt: skip
    assert retired["retired"] == ["k1"] and set(json.loads(keyring_file.read_text())["keys"]) == {
        "k2"
    }
    assert final.get("acme", "c5") == expected["c5"]


def test_erasing_a_customer_shreds_values_even_in_backups(tmp_path, vault) -> None:
    store = ProfileStore(vault, tmp_path / "personal.db")
    store.put("acme", "c1", {"phone": "13812345678"})
    store.put("acme", "c2", {"phone": "13900000000"})
    store.put("globex", "c1", {"phone": "13700000000"})  # same id, another tenant
    backup = tmp_path / "backup.db"
    with sqlite3.connect(tmp_path / "personal.db") as source, sqlite3.connect(backup) as copy:
        source.backup(copy)  # an online backup taken before the erasure
    assert store.erase("acme", "c1") == 1
    assert store.get("acme", "c1") is None
    assert store.get("acme", "c2") == {"phone": "13900000000"}
    assert store.get("globex", "c1") == {"phone": "13700000000"}
    fresh = Vault(vault.keyring, vault.db_path)  # no cached secret
    old = ProfileStore(fresh, backup)
    with pytest.raises(DecryptError, match="data key was erased"):
        fresh.decrypt(
            sqlite3.connect(backup)
            .execute(f"SELECT value FROM {TABLE} WHERE tenant='acme' AND customer_id='c1'")
            .fetchone()[0],
            f"{TABLE}.phone",
            data_key("acme", "c1"),
        )
    assert old.get("acme", "c1") is None  # the restored backup does not bring it back
    assert old.get("acme", "c2") == {"phone": "13900000000"}


def test_tenant_isolation_in_the_profile_table(tmp_path, vault) -> None:
    store = ProfileStore(vault, tmp_path / "p.db")
    store.put("acme", "c1", {"name": "张三"})
    assert store.get("globex", "c1") is None
    assert store.tenants_of("c1") == ["acme"]


def test_erasure_runs_pluggable_erasers_and_audits_their_counts(tmp_path, vault) -> None:
    from privacy.audit import AuditLog
    from privacy.erasure import erase_customer

    store = ProfileStore(vault, tmp_path / "p.db")
    store.put("acme", "c1", {"phone": "13812345678"})
    calls = []

    def sessions(customer_id: str, tenant: str | None) -> int:
        calls.append((customer_id, tenant))
        return 3

    audit = AuditLog(tmp_path / "audit.db")
    result = erase_customer(
        "c1", profiles=store, event_log=tmp_path / "none.db", audit=audit, actor="dpo",
        actor_tenant="acme", tenant="acme", erasers={"sessions": sessions},
    )  # fmt: skip
    assert calls == [("c1", "acme")]
    assert result["sessions_deleted"] == 3 and result["profile_fields_deleted"] == 1
    assert '"sessions_deleted": 3' in audit.query("acme")[0]["detail"]
