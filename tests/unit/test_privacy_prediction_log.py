"""The prediction log keeps the caller's tenant, is always masked, and reads per tenant."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from privacy.redaction import PredictionRedaction
from serving.prediction_log import PredictionLog, ab_report, read_log

PHONE, CARD = "13812345678", "6222020200000000006"


def row(request_id: str, tenant: str | None, variant: str = "champion", **extra) -> dict:
    return {
        "request_id": request_id,
        "tenant": tenant,
        "model": "ner",
        "registered_model": "ner",
        "variant": variant,
        "served": variant == "champion",
        "model_version": "1",
        "input": f"张三的电话 {PHONE}，邮箱 zhang.san@example.com，卡 {CARD}",
        "features": None,
        "output": {
            "entities": [
                {"start": 0, "end": 2, "text": "张三", "type": "name"},
                {"start": 6, "end": 17, "text": PHONE, "type": "mobile"},
            ]
        },
        "latency_ms": 3.0,
        "batch_size": "1",
        **extra,
    }


def write(path: Path, rows: list[dict]) -> None:
    log = PredictionLog(path, PredictionRedaction())
    log.append(rows)
    log.flush()


def test_rows_carry_the_tenant_and_nothing_raw(tmp_path: Path) -> None:
    db = tmp_path / "predictions.db"
    write(db, [row("a-1", "acme"), row("g-1", "globex"), row("d-1", None)])
    with sqlite3.connect(db) as connection:
        stored = connection.execute("SELECT tenant, input, output FROM predictions").fetchall()
    assert [r[0] for r in stored] == ["acme", "globex", None]
    for _, text, output in stored:
        for raw in (PHONE, CARD, "zhang.san@", "张三"):
            assert raw not in text and raw not in output, (raw, text, output)
        assert "z***@example.com" in text and "张*" in text  # names from the NER output
        assert json.loads(output)["entities"][0]["text"] == "张*"


def test_pair_inputs_are_masked_too(tmp_path: Path) -> None:
    """faq_match logs {text_a, text_b}: the knowledge base sends customers' own questions."""
    db = tmp_path / "predictions.db"
    question = {"text_a": f"我的手机号是{PHONE}", "text_b": "手机银行怎么注册"}
    pair = row("p-1", "acme", input=question)
    write(db, [{**pair, "model": "faq_match", "output": {"score": 0.2}}])
    with sqlite3.connect(db) as connection:
        (text,) = connection.execute("SELECT input FROM predictions").fetchone()
    assert PHONE not in text and json.loads(text)["text_b"] == "手机银行怎么注册"


def test_reads_filter_by_tenant(tmp_path: Path) -> None:
    db = tmp_path / "predictions.db"
    write(db, [row("a-1", "acme"), row("a-2", "acme", "challenger"), row("g-1", "globex")])
    assert set(read_log(db, "ner", "acme")["request_id"]) == {"a-1", "a-2"}
    assert list(read_log(db, tenant="globex")["request_id"]) == ["g-1"]
    report = ab_report(db, "ner", "acme")
    assert report["tenant"] == "acme"
    assert report["variants"]["champion"]["items"] == 1
    assert report["variants"]["challenger"]["items"] == 1
    assert ab_report(db, "ner", "globex")["variants"].keys() == {"champion"}
    with pytest.raises(ValueError, match="no rows of tenant 'initech' for model 'ner'"):
        ab_report(db, "ner", "initech")


def test_a_log_written_before_tenants_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "predictions.db"
    with sqlite3.connect(db) as connection:
        connection.execute(
            "CREATE TABLE predictions (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT,"
            " request_id TEXT, model TEXT, registered_model TEXT, variant TEXT, served TEXT,"
            " model_version TEXT, input TEXT, features TEXT, output TEXT, latency_ms REAL,"
            " batch_size TEXT)"
        )
        connection.execute(
            "INSERT INTO predictions (request_id, model, variant, served, output, latency_ms)"
            " VALUES ('old-1', 'ner', 'champion', '1', '{}', 1.0)"
        )
    assert read_log(db, "ner")["tenant"].isna().all()  # old rows: no tenant
    write(db, [row("new-1", "acme")])
    assert list(read_log(db, "ner", "acme")["request_id"]) == ["new-1"]
