"""The session-end log grep (tests/log_grep.py) finds a planted leak and passes masked logs."""

from __future__ import annotations

import logging
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from privacy import masking
from privacy.masking import install_log_masking, uninstall_log_masking
from privacy.scan import scan_files
from tests import log_grep

LEAKS = "客户手机13912345678，身份证11010519491231002X，卡6222 0202 0011 2230"


def config_for(base: Path) -> SimpleNamespace:
    return SimpleNamespace(_tmp_path_factory=SimpleNamespace(getbasetemp=lambda: base))


@pytest.fixture()
def planted_base() -> Iterator[Path]:
    """Outside pytest's temp dir, and deleted at once: the session-end grep must not see the
    leak planted here (it would rightly fail the run)."""
    with tempfile.TemporaryDirectory(prefix="scrm-planted-") as folder:
        yield Path(folder)


def test_a_planted_log_fails_the_grep_with_each_kind_reported_masked(planted_base, monkeypatch):
    monkeypatch.delenv("SCRM_TEST_WORKSPACE", raising=False)
    planted = planted_base / "pipeline0" / "project" / "run" / "serve.log"
    planted.parent.mkdir(parents=True)
    planted.write_text(f"ok line\n{LEAKS}\n", encoding="utf-8")
    findings, files = log_grep.scan_session(config_for(planted_base))
    assert files >= 1
    assert sorted(f.kind for f in findings) == ["card", "id", "mobile"]
    assert all(f.line == 2 and "13912345678" not in f.masked for f in findings)


def test_raw_sqlite_bytes_of_the_workspace_are_scanned(planted_base, monkeypatch):
    monkeypatch.delenv("SCRM_TEST_WORKSPACE", raising=False)
    db_path = planted_base / "pipeline0" / "project" / "data" / "events" / "intake.db"
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE t (x TEXT)")
        db.execute("INSERT INTO t VALUES (?)", (LEAKS,))
    findings, _ = log_grep.scan_session(config_for(planted_base))
    assert {f.kind for f in findings} == {"card", "id", "mobile"}


def test_a_masked_log_passes(tmp_path):
    log_file = tmp_path / "app.log"
    handler = logging.FileHandler(log_file, encoding="utf-8")
    logger = logging.getLogger("test.log_grep")
    logger.addHandler(handler)
    already = bool(masking._installed)  # e.g. by importing pipelines.cli
    install_log_masking()
    try:
        logger.warning("customer said %s", LEAKS)
    finally:
        if not already:
            uninstall_log_masking()
        logger.removeHandler(handler)
        handler.close()
    assert "139****5678" in log_file.read_text(encoding="utf-8")
    assert scan_files([log_file]) == []


def test_digits_inside_hex_ids_are_not_personal_numbers() -> None:
    """Request UUIDs and SHA-256 chains hold 11-digit runs by chance; a phone next to text is
    still found."""
    from privacy.scan import scan_text

    assert scan_text("request_id 3d3d8947-b07f-473e-9442-b18700959361") == []
    assert scan_text("prev_hash 11da705fed1d19571455582ac30970f0c762011f9a78e69de6d8be") == []
    assert [f.kind for f in scan_text("我的手机号是13812345678，id=13912345678")] == [
        "mobile",
        "mobile",
    ]
