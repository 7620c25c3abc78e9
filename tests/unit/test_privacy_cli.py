"""`scrm keys rotate` and `scrm customers erase` on a throwaway project root."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from features.conversations import ConversationEvent, EventLog
from pipelines.cli import app
from privacy.admin import vault_of
from privacy.audit import AuditLog
from privacy.crypto import Keyring, Vault
from privacy.profiles import TABLE, ProfileStore
from settings.privacy import PrivacyConfig
from tests.conftest import REPO

PHONE = "13812345678"


class Ran:
    def __init__(self, result):
        self.returncode, self.stdout, self.stderr = result.exit_code, result.stdout, result.stderr


def scrm(root: Path, *args: str, **env: str) -> Ran:
    """In-process (the CLI's imports take seconds per subprocess on a loaded machine)."""
    return Ran(CliRunner().invoke(app, list(args), env={"SCRM_ROOT": str(root), **env}))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("project")
    shutil.copy(REPO / "params.yaml", folder / "params.yaml")
    (folder / "privacy").mkdir(parents=True)
    shutil.copy(REPO / "privacy/policies.yaml", folder / "privacy/policies.yaml")
    return folder


def stores(root: Path) -> ProfileStore:
    keyring = Keyring.load(root / "keys/keyring.json", None)
    vault = Vault(keyring, root / "keys/data_keys.db")
    return ProfileStore(vault, root / "data/privacy/personal.db")


def test_rotate_then_erase(root) -> None:
    first = scrm(root, "keys", "rotate")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["active"] == "k1"  # first run creates the keyring
    profiles = stores(root)
    for tenant, customer in (("acme", "c1"), ("acme", "c2"), ("globex", "c1")):
        profiles.put(tenant, customer, {"phone": PHONE, "name": "张三"})
    log = EventLog(root / "data/events/conversations.db")
    for customer in ("c1", "c1", "c2"):
        log.append(ConversationEvent(customer, datetime.now(UTC), "wecom", "loan", "negative"))

    rotated = scrm(root, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    result = json.loads(rotated.stdout)
    assert result["active"] == "k2"
    assert result[f"{TABLE}.value"] == {"reencrypted": 6, "unreadable_erased": 0}
    assert result["values_by_key"] == {"k2": 9}  # 6 values + 3 data keys
    assert stores(root).get("acme", "c1") == {"phone": PHONE, "name": "张三"}

    refused = scrm(root, "customers", "erase", "c1")
    assert refused.returncode == 1
    assert (
        refused.stderr.strip()
        == "error: erasing customer c1 cannot be undone; add --yes to confirm"
    )

    erased = scrm(root, "customers", "erase", "c1", "--tenant", "acme", "--yes")
    assert erased.returncode == 0, erased.stderr
    result = json.loads(erased.stdout)
    assert {k: result.pop(k) for k in list(result) if not k.endswith("_deleted")} == {
        "customer_id": "c1",
        "tenants": ["acme"],
        "data_keys_shredded": 1,
    }
    assert (result.pop("profile_fields_deleted"), result.pop("conversation_events_deleted")) == (
        2,
        2,
    )
    # every registered store reported, and held nothing of c1 here
    assert set(result) >= {
        "intake_messages_deleted",
        "sessions_deleted",
        "prediction_rows_deleted",
        "feast_online_features_deleted",
    } and set(result.values()) == {0}
    after = stores(root)
    assert after.get("acme", "c1") is None
    assert after.get("globex", "c1") == {"phone": PHONE, "name": "张三"}
    assert list(log.all().customer_id) == ["c2"]
    key = vault_of(PrivacyConfig(), root).system_secret("audit-chain")
    audit = AuditLog(root / "data/privacy/audit.db", key=key)
    (entry,) = audit.query("acme", action="customer.erase")
    assert entry["resource_id"] == "c1" and entry["actor"].startswith("cli:")
    assert audit.verify().ok  # keyed (HMAC) chain: verifies with the key only
    assert not AuditLog(root / "data/privacy/audit.db").verify().ok
    for file in (root / "data/privacy").iterdir():
        assert PHONE.encode() not in file.read_bytes(), file


def test_bad_keyring_is_one_line(root) -> None:
    result = scrm(root, "keys", "rotate", SCRM_PRIVACY_KEYS="{oops")
    assert result.returncode == 1
    assert result.stderr.startswith("error: environment variable SCRM_PRIVACY_KEYS: not a keyring")
    assert len(result.stderr.strip().splitlines()) == 1


def test_erasure_without_any_keyring_still_deletes_events(tmp_path) -> None:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    log = EventLog(tmp_path / "data/events/conversations.db")
    log.append(ConversationEvent("c7", datetime.now(UTC), "web_chat"))
    result = scrm(tmp_path, "customers", "erase", "c7", "--yes")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["conversation_events_deleted"] == 1
    with sqlite3.connect(tmp_path / "data/events/conversations.db") as db:
        assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0


def test_keys_issue_list_revoke(root) -> None:
    from privacy.auth import ApiKeyStore, AuthError

    issued = scrm(root, "keys", "issue", "--subject", "desk-7", "--tenant", "acme", "--role",
                  "agent", "--department", "cards", "--clearance", "2")  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    key = issued.stdout.strip()
    assert key.startswith("scrm_") and len(key.splitlines()) == 1  # printed once, alone
    store_file = root / "data/privacy/api_keys.json"
    assert key not in store_file.read_text()  # only its hash is kept
    assert (store_file.stat().st_mode & 0o777) == 0o600
    store = ApiKeyStore(store_file)
    subject = store.verify(key)
    assert (subject.id, subject.tenant, subject.role, subject.department, subject.clearance) == (
        "desk-7", "acme", "agent", "cards", 2,
    )  # fmt: skip
    key_id = key.split("_")[1]
    listed = scrm(root, "keys", "list", "--tenant", "acme")
    assert listed.returncode == 0 and key_id in json.loads(listed.stdout)
    assert "sha256" not in listed.stdout and key not in listed.stdout
    assert json.loads(scrm(root, "keys", "list", "--tenant", "globex").stdout) == {}

    revoked = scrm(root, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    with pytest.raises(AuthError, match="revoked"):
        store.verify(key)
    unknown = scrm(root, "keys", "revoke", "nope")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: no API key with id nope; see scrm keys list"


def test_keys_issue_refuses_bad_attributes_in_one_line(root) -> None:
    bad = scrm(root, "keys", "issue", "--subject", "x", "--tenant", "acme", "--role", "boss")
    assert bad.returncode == 1 and bad.stderr.startswith("error: role: Input should be")
    assert len(bad.stderr.strip().splitlines()) == 1
    high = scrm(root, "keys", "issue", "--subject", "x", "--tenant", "acme", "--role", "agent",
                "--clearance", "7")  # fmt: skip
    assert high.returncode == 1 and "clearance" in high.stderr


def test_serve_tls_options_are_checked_before_anything_starts(root, tmp_path) -> None:
    half = scrm(root, "serve", "--tls-cert", str(tmp_path / "cert.pem"))
    assert half.returncode == 1 and "--tls-cert and --tls-key go together" in half.stderr
    (tmp_path / "bad.pem").write_text("not a certificate")
    bad = scrm(root, "serve", "--detach", "--port", "1", "--tls-cert", str(tmp_path / "bad.pem"),
               "--tls-key", str(tmp_path / "bad.pem"))  # fmt: skip
    assert bad.returncode == 1 and "cannot load TLS certificate/key" in bad.stderr
    assert not (root / "run" / "serve.pid").exists()
