"""Erasure that stays erased (issue 17): a customer is erased, then every store under the
project is searched, cell by cell, for any trace: their id (raw or masked, as the prediction
log writes it), the line they wrote before logging in, their offline feature rows."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from crm.channels.identity import IdentityMap
from crm.channels.webchat import ChatTranscript
from privacy import atrest
from privacy.masking import mask_text
from privacy.redaction import PredictionRedaction
from serving.prediction_log import PredictionLog
from settings.privacy import PrivacyConfig
from tests.conftest import REPO
from tests.integration.test_privacy_atrest import Stores, erase, fresh_cipher, populate


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


CUSTOMER = "C13800001111"  # an id the masker shortens: the prediction log stores it masked
PRE_LOGIN = "登录前说的话 pre-login"


def plant(root: Path, cipher: atrest.FieldCipher) -> None:
    """What populate() does not cover: a line from before login, a tabular prediction, the
    offline feature and validated rows."""
    stores = Stores(root)
    identity = IdentityMap(stores.channel_db)
    identity.link("acme", "web_chat", "visitor-tab", "anon-1234abcd")  # before login
    lines = ChatTranscript(stores.channel_db, cipher,
                           lambda sid: atrest.data_key("acme", identity.lookup("acme", "web_chat",
                                                                               sid)))  # fmt: skip
    lines.add("visitor-tab", "customer", PRE_LOGIN)
    identity.link("acme", "web_chat", "visitor-tab", CUSTOMER)  # the visitor logs in
    log = PredictionLog(stores.settings.prediction_log, PredictionRedaction())
    for who in (CUSTOMER, "C-other"):
        log.append([{"request_id": f"r-{who}", "model": "churn", "registered_model": "churn",
                     "variant": "champion", "model_version": "1", "input": who,
                     "output": {"score": 0.3}, "latency_ms": 1.0}])  # fmt: skip
    log.flush()
    frame = pd.DataFrame({"customer_id": [CUSTOMER, "C-other"], "monetary_90d": [1.0, 2.0]})
    for folder in (stores.settings.features_dir, stores.settings.path("data/validated")):
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(folder / "customer_rfm.parquet", index=False)


def cells(root: Path):
    """(file, value) of every stored value under `root`: sqlite cells, parquet cells, text."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            for value in pd.read_parquet(path).astype(str).to_numpy().ravel():
                yield path, value
        elif path.read_bytes()[:16] == b"SQLite format 3\x00":
            with sqlite3.connect(path) as db:
                tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE "
                                                   "type='table'")]  # fmt: skip
                for table in tables:
                    for row in db.execute(f'SELECT * FROM "{table}"'):
                        for value in row:
                            yield path, str(value)
        elif path.suffix in (".json", ".txt", ".log", ".jsonl"):
            yield path, path.read_text(encoding="utf-8", errors="replace")


def test_erasing_a_customer_leaves_no_trace_in_any_store(project: Path) -> None:
    root = project
    cipher = fresh_cipher(root)
    populate(root, cipher, CUSTOMER)
    populate(root, cipher, "C-2")
    plant(root, cipher)
    masked = {mask_text(CUSTOMER, level) for level in ("standard", "strict", "review")}
    result = erase(root, CUSTOMER)
    assert result["prediction_rows_deleted"] == 1
    assert result["offline_feature_rows_deleted"] == 2
    assert result["web_chat_lines_deleted"] == 2  # the session's line and the pre-login one
    reader = fresh_cipher(root)
    traces = []
    for path, value in cells(root):
        if path.name == "audit.db":
            continue  # the erasure's own record: the id it erased, by design
        if any(form in value for form in {CUSTOMER, *masked}) or PRE_LOGIN in value:
            traces.append((path.relative_to(root), value[:80]))
    assert traces == [], traces
    stores = Stores(root)
    assert ChatTranscript(stores.channel_db, reader).recent("s-C-2")  # the other stays
    kept = pd.read_parquet(stores.settings.features_dir / "customer_rfm.parquet")
    assert list(kept.customer_id) == ["C-other"]
    with sqlite3.connect(stores.settings.prediction_log) as db:
        left = [json.loads(r[0]) for r in db.execute("SELECT input FROM predictions")]
    assert left == ["C-other"]


def test_data_keys_and_keyring_live_outside_the_data_directory() -> None:
    config = PrivacyConfig()
    for path in (config.data_keys_db, config.keyring_file):
        assert not path.startswith("data/"), path
    assert config.personal_db.startswith("data/")


def test_a_missing_keyring_with_data_keys_left_is_an_error_not_a_new_key(project) -> None:
    root = project
    from privacy.crypto import KeyringError

    cipher = fresh_cipher(root)
    populate(root, cipher, "C-5")
    (root / PrivacyConfig().keyring_file).unlink()
    with pytest.raises(KeyringError, match="restore the keyring"):
        atrest.open_cipher(root, PrivacyConfig())
    assert not (root / PrivacyConfig().keyring_file).exists()
