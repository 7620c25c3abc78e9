"""Masking: detectors, levels by caller, pluggable NER spans, logs always masked."""

from __future__ import annotations

import logging

import pytest

from privacy.masking import (
    PiiLogFilter,
    Span,
    detect,
    install_log_masking,
    luhn_valid,
    mask_for_logs,
    mask_payload,
    mask_text,
    spans_from_entities,
    uninstall_log_masking,
)

PHONE, ID_NUMBER, CARD = "13812345678", "11010519491231002X", "6222020200000000006"


def kinds(text: str) -> list[tuple[str, str]]:
    return sorted((s.kind, text[s.start : s.end]) for s in detect(text))


def test_detectors_find_personal_numbers_and_leave_others() -> None:
    text = (
        f"电话{PHONE}，又+86 139-8765-4321；身份证{ID_NUMBER}；卡 {CARD[:4]} {CARD[4:8]} "
        f"{CARD[8:12]} {CARD[12:16]} {CARD[16:]}；邮箱li.si@example.com.cn"
    )
    assert kinds(text) == [
        ("card", "6222 0202 0000 0000 006"),
        ("email", "li.si@example.com.cn"),
        ("id", ID_NUMBER),
        ("mobile", "+86 139-8765-4321"),
        ("mobile", PHONE),
    ]
    # order numbers, a non-Luhn 16 digit run, a 12-digit number, an invalid birth date, a
    # landline: not personal numbers of these kinds
    assert detect("订单2023112712345678 流水6222020200000001 编号123456789012") == []
    assert detect("证号110105199413320021 座机010-12345678 12812345678") == []


def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid(CARD)
    assert not luhn_valid("4111111111111112")


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("strict", "张三 [PHONE] [ID] [CARD] [EMAIL]"),
        ("standard", "张三 138****5678 110105********002X ***************0006 z***@qq.com"),
        ("review", f"张三 {PHONE} 11010519491231**** 622202*********0006 zs@qq.com"),
    ],
)
def test_levels(level, expected) -> None:
    assert mask_text(f"张三 {PHONE} {ID_NUMBER} {CARD} zs@qq.com", level) == expected


def test_names_and_addresses_come_from_a_pluggable_span_source() -> None:
    text = "客户李小龙住在北京市朝阳区建国路88号"
    ner = [{"start": 2, "end": 5, "label": "name"}, {"start": 7, "end": 19, "label": "address"},
           {"start": 0, "end": 2, "label": "position"}]  # fmt: skip
    spans = spans_from_entities(ner)
    assert mask_text(text, "standard", spans) == "客户李**住在北京市朝阳区****"
    assert mask_text(text, "strict", span_source=lambda _: spans) == "客户[NAME]住在[ADDRESS]"
    assert mask_text(text, "strict") == text  # without NER, names are not guessed


def test_payload_masks_known_fields_whole_and_detects_in_the_rest() -> None:
    payload = {
        "name": "王五",
        "phone": int(PHONE),
        "profile": {"email": "w5@163.com", "notes": [f"回电 {PHONE}", "VIP"]},
        "score": 0.93,
        "count": 12,
        "active": True,
    }
    masked = mask_payload(payload, "standard")
    assert masked == {
        "name": "王*",
        "phone": "138****5678",
        "profile": {"email": "w***@163.com", "notes": ["回电 138****5678", "VIP"]},
        "score": 0.93,
        "count": 12,
        "active": True,
    }
    assert mask_payload({"n": 13812345678}, "strict") == {"n": "[PHONE]"}
    with pytest.raises(ValueError, match="unknown masking level"):
        mask_payload({"name": "x"}, "none")


def test_overlapping_spans_keep_the_longest() -> None:
    text = f"ID {ID_NUMBER}"
    assert mask_text(text, "strict", [Span(3, 10, "name")]) == "ID [ID]"


def test_logs_are_always_masked(caplog) -> None:
    assert mask_for_logs(f"call {PHONE}") == "call 138****5678"
    install_log_masking()
    install_log_masking()  # idempotent
    try:
        logger = logging.getLogger("scrm.test.privacy")
        with caplog.at_level(logging.INFO, logger="scrm.test.privacy"):
            logger.info("customer %s id %s", PHONE, ID_NUMBER)
            try:
                raise ValueError(f"bad card {CARD}")
            except ValueError:
                logger.exception("failed for %s", "x@y.com")
        text = caplog.text + "".join(r.getMessage() for r in caplog.records)
        assert "138****5678" in text and "110105********002X" in text
        for raw in (PHONE, ID_NUMBER, CARD, "x@y.com"):
            assert raw not in text
        assert "ValueError: bad card ***************0006" in caplog.text
    finally:
        uninstall_log_masking()


def test_log_filter_on_a_handler(tmp_path) -> None:
    handler = logging.FileHandler(tmp_path / "app.log", encoding="utf-8")
    handler.addFilter(PiiLogFilter())
    logger = logging.getLogger("scrm.test.privacy.filter")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("refund to %s for %s", CARD, PHONE)
    handler.close()
    logger.removeHandler(handler)
    written = (tmp_path / "app.log").read_text(encoding="utf-8")
    assert written.strip() == "refund to ***************0006 for 138****5678"


def test_uvicorn_access_log_lines_are_masked_and_still_format() -> None:
    from uvicorn.logging import AccessFormatter

    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/v1/lookup?phone={PHONE}", "1.1", 200), None,
    )  # fmt: skip
    PiiLogFilter().filter(record)
    line = AccessFormatter(fmt="%(client_addr)s %(request_line)s %(status_code)s").format(record)
    assert line == "127.0.0.1:5000 GET /v1/lookup?phone=138****5678 HTTP/1.1 200 OK"


def test_numbers_passed_as_integers_are_masked() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "phone %d", (13812345678,), None)
    PiiLogFilter().filter(record)
    assert record.getMessage() == "phone 138****5678"


def test_scanner_reports_raw_numbers_without_repeating_them(tmp_path) -> None:
    import tempfile
    from pathlib import Path

    from privacy.scan import scan_files

    # Planted outside pytest's temp dir and deleted at once: the session-end log grep
    # (tests/log_grep.py) would otherwise rightly fail the run on this deliberate leak.
    with tempfile.TemporaryDirectory(prefix="scrm-planted-") as folder:
        logs = Path(folder)
        (logs / "app.log").write_text(
            f"ok 138****5678 [ID]\nleak {PHONE}\nleak card {CARD} order 2023112712345678\n",
            encoding="utf-8",
        )
        (logs / "other.bin").write_text(PHONE)  # not a log pattern: not scanned
        findings = scan_files([logs])
    assert [(f.line, f.kind, f.masked) for f in findings] == [
        (2, "mobile", "138****5678"),
        (3, "card", "***************0006"),
    ]
    assert all(PHONE not in repr(f) for f in findings)
    masked_only = tmp_path / "masked.log"
    masked_only.write_text(mask_for_logs(f"{PHONE} {ID_NUMBER} {CARD}"), encoding="utf-8")
    assert scan_files([masked_only]) == []


def test_platform_ids_are_not_mistaken_for_phone_numbers() -> None:
    body = {"request_id": "0532f0e0-98c1-474b-a1f2-a13912345678", "text": "call 13912345678"}
    masked = mask_payload(body, "strict")
    assert masked["request_id"] == body["request_id"]  # a UUID tail is not a phone
    assert masked["text"] == "call [PHONE]"
