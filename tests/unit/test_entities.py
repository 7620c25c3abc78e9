"""Entity registry and `extract_entities`: every registered type, checksums, overlaps, offsets.

The registry is the test set: each entry's example must yield exactly its expected span and
normalised value. Everything here is pure Python on small strings; no model, no network.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from training.entities import Entity, Extractor, extract_entities, load_registry
from training.entities.extract import resolve
from training.entities.gazetteer import GAZETTEER_DIR, Gazetteer, Term, parse_lines
from training.entities.numerals import parse_number
from training.entities.registry import REGISTRY_PATH, EntityType, read_registry
from training.entities.textnorm import normalise

REGISTRY = load_registry()
CLUENER = {
    "address",
    "book",
    "company",
    "game",
    "government",
    "movie",
    "name",
    "organization",
    "position",
    "scene",
}


def only(entities: list[Entity], type_name: str) -> list[Entity]:
    return [entity for entity in entities if entity.type == type_name]


def model_span(entity_type: EntityType) -> list[tuple[int, int, str]]:
    """The span a perfect NER model would return for a model-type example."""
    start = entity_type.example.index(entity_type.expected)
    return [(start, start + len(entity_type.expected), entity_type.name)]


def to_full_width(text: str) -> str:
    """ASCII printable characters and space to their full-width forms (ａ, １, ＠, U+3000)."""
    return "".join(
        "\u3000" if char == " " else chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char
        for char in text
    )


# --- the registry --------------------------------------------------------------------------------


def test_registry_has_at_least_100_uniquely_named_types_from_all_sources() -> None:
    names = [entity_type.name for entity_type in REGISTRY]
    assert len(names) >= 100
    assert len(set(names)) == len(names)
    counts = Counter(entity_type.source for entity_type in REGISTRY)
    assert set(counts) == {"model", "pattern", "gazetteer"}
    assert {t.name for t in REGISTRY if t.source == "model"} == CLUENER


@pytest.mark.parametrize("entity_type", REGISTRY, ids=lambda t: t.name)
def test_every_registered_example_extracts_its_expected_span(entity_type: EntityType) -> None:
    spans = model_span(entity_type) if entity_type.source == "model" else None
    entities = extract_entities(entity_type.example, spans)
    start = entity_type.example.index(entity_type.expected)
    found = only(entities, entity_type.name)
    assert [(e.start, e.end, e.text) for e in found] == [
        (start, start + len(entity_type.expected), entity_type.expected)
    ], entities
    assert found[0].source == entity_type.source
    if entity_type.normalised is None:
        assert found[0].value is None
    else:
        assert found[0].value == entity_type.normalised
        assert isinstance(found[0].value, str) == isinstance(entity_type.normalised, str)


@pytest.mark.parametrize(
    "entity_type", [t for t in REGISTRY if t.source != "model"], ids=lambda t: t.name
)
def test_every_example_survives_full_width_input(entity_type: EntityType) -> None:
    """Full-width forms are 1:1 in length, so the same spans and values must come back."""
    half = extract_entities(entity_type.example)
    full_text = to_full_width(entity_type.example)
    full = extract_entities(full_text)
    assert [(e.start, e.end, e.type, e.value) for e in full] == [
        (e.start, e.end, e.type, e.value) for e in half
    ]
    assert all(full_text[e.start : e.end] == e.text for e in full)


def test_model_types_come_only_from_model_spans() -> None:
    for entity_type in REGISTRY:
        if entity_type.source == "model":
            assert not only(extract_entities(entity_type.example), entity_type.name)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "BadName"}, "snake_case"),
        ({"source": "regex"}, "source"),
        ({"expected": "不在例句里"}, "not in its example"),
        ({"normalised": None}, "omit the key"),
        ({"colour": "red"}, "unknown keys"),
    ],
)
def test_registry_validation_rejects_bad_entries(tmp_path: Path, change, message: str) -> None:
    entry = {
        "name": "age",
        "source": "pattern",
        "description": "Age",
        "example": "我35岁",
        "expected": "35岁",
        **change,
    }
    path = tmp_path / "types.yaml"
    path.write_text(yaml.safe_dump({"types": [entry]}, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_registry(path)


def test_registry_rejects_duplicate_names(tmp_path: Path) -> None:
    text = REGISTRY_PATH.read_text(encoding="utf-8")
    path = tmp_path / "types.yaml"
    path.write_text(text + text.split("types:\n", 1)[1], encoding="utf-8")
    with pytest.raises(ValueError, match="duplicate type names"):
        read_registry(path)


def test_extractor_refuses_a_registry_out_of_sync_with_the_implementation() -> None:
    without_age = [t for t in REGISTRY if t.name != "age"]
    with pytest.raises(ValueError, match=r"unregistered \['age'\]"):
        Extractor(without_age)
    with_shoe_size = [*REGISTRY, EntityType("shoe_size", "gazetteer", "Shoe size", "42码", "42码")]
    with pytest.raises(ValueError, match=r"unimplemented \['shoe_size'\]"):
        Extractor(with_shoe_size)


# --- gazetteers ----------------------------------------------------------------------------------


def test_every_gazetteer_file_belongs_to_a_registered_type() -> None:
    registered = {t.name for t in REGISTRY if t.source == "gazetteer"}
    assert {path.stem for path in GAZETTEER_DIR.glob("*.txt")} == registered


def test_gazetteer_sizes() -> None:
    def canonicals(name: str) -> set[str]:
        lines = (GAZETTEER_DIR / f"{name}.txt").read_text(encoding="utf-8").splitlines()
        return {term.canonical for _, term in parse_lines(name, lines)}

    assert len(canonicals("ethnic_group")) == 56
    assert len(canonicals("solar_term")) == 24
    assert len(canonicals("province")) + 4 == 34  # the four municipalities are cities
    assert len(canonicals("city")) >= 100
    assert len(canonicals("bank")) >= 40


def test_a_term_in_two_gazetteers_is_an_error() -> None:
    entries = [("建行", Term("bank", "中国建设银行")), ("建行", Term("city", "建行"))]
    with pytest.raises(ValueError, match="both bank and city"):
        Gazetteer(entries)


def test_gazetteer_scan_returns_overlaps_and_respects_latin_word_boundaries() -> None:
    gazetteer = Gazetteer(
        [
            ("vip", Term("tier", "VIP")),
            ("企业微信", Term("ch", "企业微信")),
            ("微信支付", Term("pay", "微信支付")),
        ]
    )
    hits = gazetteer.scan("企业微信支付")
    assert [(h.start, h.end, h.type) for h in hits] == [(0, 4, "ch"), (2, 6, "pay")]
    assert [h.canonical for h in gazetteer.scan("Vip 客户")] == ["VIP"]
    assert gazetteer.scan("SVIP") == [] and gazetteer.scan("VIP8") == []


@pytest.mark.parametrize(
    "text", ["未开封的商品", "VIPER跑车", "世界大同", "历史订单在哪看", "5G手机"]
)
def test_ambiguous_words_are_not_gazetteer_hits(text: str) -> None:
    kinds = {e.type for e in extract_entities(text)}
    assert not kinds & {"city", "membership_tier", "course_subject", "data_size"}, kinds


# --- checksums: invalid identifiers are not extracted --------------------------------------------


def id_check_digit(first17: str) -> str:
    """Independent ISO 7064 MOD 11-2 check digit for building test IDs."""
    total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(first17))
    return "10X98765432"[total % 11]


@pytest.mark.parametrize(
    ("valid", "invalid", "type_name"),
    [
        ("11010519491231002X", "110105194912310021", "resident_id"),
        ("440305199003071236", "440305199003071237", "resident_id"),
        ("6222021234567890128", "6222021234567890127", "bank_card"),
        ("4111 1111 1111 1111", "4111 1111 1111 1112", "bank_card"),
        ("91350100M000100Y43", "91350100M000100Y44", "credit_code"),
        ("GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 33", "iban"),
        ("1M8GDM9AXKP042788", "1M8GDM9A1KP042788", "vin"),
        ("IMEI 490154203237518", "IMEI 490154203237519", "imei"),
    ],
)
def test_check_digits_decide_extraction(valid: str, invalid: str, type_name: str) -> None:
    assert only(extract_entities(f"号码：{valid}。"), type_name)
    assert not only(extract_entities(f"号码：{invalid}。"), type_name)


def test_resident_id_needs_a_real_birth_date_and_province() -> None:
    month_13 = "1101051949" + "1331" + "002"
    bad_province = "9901051949" + "1231" + "002"
    for first17 in (month_13, bad_province):
        number = first17 + id_check_digit(first17)
        assert not only(extract_entities(number), "resident_id"), number
    good = "1101051949" + "1231" + "002"
    assert id_check_digit(good) == "X"  # the helper agrees with the published sample
    assert not only(extract_entities("110105491331002"), "resident_id_15")


# --- overlap resolution --------------------------------------------------------------------------


def test_longer_model_span_beats_the_gazetteer_hit_inside_it() -> None:
    text = "寄到北京市海淀区中关村大街27号"
    entities = extract_entities(text, [(2, len(text), "address")])
    assert [(e.type, e.text) for e in entities] == [("address", "北京市海淀区中关村大街27号")]


def test_same_span_gazetteer_type_replaces_the_model_type() -> None:
    entities = extract_entities("我在招商银行办卡", [(2, 6, "organization")])
    assert [(e.type, e.source, e.value) for e in entities] == [("bank", "gazetteer", "招商银行")]


def test_validated_identifier_beats_a_longer_model_span_cutting_through_it() -> None:
    text = "电话13812345678，地址是滨海路一号附近的那栋楼"
    cut = text.index("5678")
    assert len(text) - cut > 11  # the model span is longer than the phone number
    entities = extract_entities(text, [(cut, len(text), "address")])
    assert [(e.type, e.text) for e in entities] == [("mobile_phone", "13812345678")]


def test_keyword_match_beats_a_longer_span_it_overlaps() -> None:
    text = "QQ号12345，王者荣耀区服"
    start = text.index("2345")
    entities = extract_entities(text, [(start, len(text), "game")])
    assert [(e.type, e.text) for e in entities] == [
        ("social_platform", "QQ"),
        ("qq_number", "12345"),
    ]


def test_keyword_beats_a_bare_format() -> None:
    entities = extract_entities("QQ 13812345678")
    assert [e.type for e in entities] == ["social_platform", "qq_number"]
    assert not only(extract_entities("订单号6222021234567890128"), "bank_card")


@pytest.mark.parametrize(
    ("text", "type_name", "span_text"),
    [
        ("孩子上一年级", "school_grade", "一年级"),  # not the duration 一年
        ("等了两个小时", "duration", "两个小时"),  # not the quantity 两个
        ("一共人民币3万元", "amount_cny", "人民币3万元"),  # not the currency 人民币
        ("在企业微信里说", "scrm_channel", "企业微信"),  # not the platform 微信
        ("中国银行的网点", "bank", "中国银行"),  # not the country 中国
        ("下周三见", "relative_date", "下周三"),  # not the weekday 周三
        ("IP是10.1.2.3", "ipv4", "10.1.2.3"),  # not the version 10.1.2.3
        ("身高1米75", "height", "1米75"),  # not the distance 1米
    ],
)
def test_longer_or_stronger_span_wins(text: str, type_name: str, span_text: str) -> None:
    start = text.index(span_text)
    end = start + len(span_text)
    overlapping = [e for e in extract_entities(text) if e.start < end and start < e.end]
    assert [(e.type, e.text) for e in overlapping] == [(type_name, span_text)]


def test_result_is_sorted_non_overlapping_and_order_independent() -> None:
    text = "张伟（11010519491231002X）下周三下午3点在北京市朝阳区的招商银行存了人民币3万元定期"
    address, organization = text.index("北京市朝阳区"), text.index("朝阳区的招商银行")
    spans = [
        (0, 2, "name"),
        (address, address + 6, "address"),
        (organization, organization + 8, "organization"),
    ]
    first = extract_entities(text, spans)
    assert first == extract_entities(text, list(reversed(spans)))
    assert [e.start for e in first] == sorted(e.start for e in first)
    assert all(a.end <= b.start for a, b in zip(first, first[1:], strict=False))
    assert {e.type for e in first} >= {
        "name",
        "resident_id",
        "relative_date",
        "time",
        "amount_cny",
        "bank_product",
    }


def test_exact_ties_go_to_the_earlier_registry_type() -> None:
    from training.entities.extract import _Candidate

    order = {"resident_id": 0, "bank_card": 1}
    candidates = [
        _Candidate(0, 18, "bank_card", "pattern", "x", 1),
        _Candidate(0, 18, "resident_id", "pattern", "y", 1),
    ]
    assert [c.type for c in resolve(candidates, order)] == ["resident_id"]
    assert [c.type for c in resolve(reversed(candidates), order)] == ["resident_id"]


# --- offsets and normalisation of the input text -------------------------------------------------


def test_offsets_index_the_original_text_even_when_nfkc_changes_length() -> None:
    text = "面积90㎡，体温38℃，电话：１３８ １２３４ ５６７８，ＱＱ号：１２３４５６"
    entities = extract_entities(text)
    assert all(text[e.start : e.end] == e.text for e in entities)
    found = {e.type: (e.text, e.value) for e in entities}
    assert found["area"] == ("90㎡", 90)
    assert found["temperature"] == ("38℃", 38)
    assert found["mobile_phone"] == ("１３８ １２３４ ５６７８", "13812345678")
    assert found["qq_number"] == ("１２３４５６", "123456")


def test_normalise_keeps_a_source_index_per_normalised_character() -> None:
    normalised = normalise("Ａ㎡b")
    assert normalised.text == "Am2b"
    assert normalised.source == (0, 1, 1, 2)
    assert normalised.span(1, 3) == (1, 2)
    assert normalised.span(1, 4) == (1, 3)
    with pytest.raises(ValueError):
        normalised.span(2, 2)


@pytest.mark.parametrize(
    ("text", "type_name", "span_text", "value"),
    [
        ("全款￥１２．５", "amount_cny", "￥１２．５", 12.5),
        ("京Ａ１２３４５停在楼下", "plate_number", "京Ａ１２３４５", "京A12345"),
        (
            "ｓａｌｅｓ＠ｅｘａｍｐｌｅ．ｃｏｍ",
            "email",
            "ｓａｌｅｓ＠ｅｘａｍｐｌｅ．ｃｏｍ",
            "sales@example.com",
        ),
        (
            "证件１１０１０５１９４９１２３１００２ｘ",
            "resident_id",
            "１１０１０５１９４９１２３１００２ｘ",
            "11010519491231002X",
        ),
        ("时间：１４：３０", "time", "１４：３０", "14:30"),
    ],
)
def test_full_width_forms(text: str, type_name: str, span_text: str, value) -> None:
    found = only(extract_entities(text), type_name)
    assert [(e.text, e.value) for e in found] == [(span_text, value)]


# --- model spans ---------------------------------------------------------------------------------


def test_model_spans_merge_with_pattern_and_gazetteer_entities() -> None:
    text = "张伟在腾讯科技有限公司上班，电话13812345678"
    entities = extract_entities(text, [[0, 2, "name"], (3, 11, "company")])
    assert [(e.type, e.text, e.source, e.value) for e in entities] == [
        ("name", "张伟", "model", None),
        ("company", "腾讯科技有限公司", "model", None),
        ("mobile_phone", "13812345678", "pattern", "13812345678"),
    ]


@pytest.mark.parametrize(
    ("spans", "message"),
    [
        ([(0, 99, "name")], "outside text"),
        ([(3, 3, "name")], "outside text"),
        ([(-1, 2, "name")], "outside text"),
        ([(0, 2, "person")], "not a registered model type"),
        ([(0, 2, "mobile_phone")], "not a registered model type"),
    ],
)
def test_bad_model_spans_are_rejected(spans, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        extract_entities("张伟你好", spans)


def test_empty_text() -> None:
    assert extract_entities("") == []
    assert extract_entities("   ") == []


# --- individual pattern forms --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "type_name", "span_text", "value"),
    [
        ("电话8613812345678", "mobile_phone", "8613812345678", "13812345678"),
        ("电话0086 13812345678", "mobile_phone", "0086 13812345678", "13812345678"),
        ("电话138 1234 5678", "mobile_phone", "138 1234 5678", "13812345678"),
        ("座机(010)62345678", "landline_phone", "(010)62345678", "010-62345678"),
        ("价格¥12.5", "amount_cny", "¥12.5", 12.5),
        ("价格12.50元", "amount_cny", "12.50元", 12.5),
        ("一共三千元", "amount_cny", "三千元", 3000),
        ("大写壹万贰仟元整", "amount_cny", "壹万贰仟元整", 12000),
        ("预算1.5亿元", "amount_cny", "1.5亿元", 150_000_000),
        ("收益率3.5%", "percentage", "3.5%", "3.5%"),
        ("费率千分之五", "percentage", "千分之五", "0.5%"),
        ("打7.5折", "discount", "7.5折", 0.75),
        ("2024-03-05到", "date", "2024-03-05", "2024-03-05"),
        ("2024/3/5到", "date", "2024/3/5", "2024-03-05"),
        ("二〇二四年三月五日", "date", "二〇二四年三月五日", "2024-03-05"),
        ("3月5号到", "date", "3月5号", "--03-05"),
        ("2024年12月到期", "date", "2024年12月", "2024-12"),
        ("晚上8点15分", "time", "晚上8点15分", "20:15"),
        ("中午12点", "time", "中午12点", "12:00"),
        ("十点半", "time", "十点半", "10:30"),
        ("一年半", "duration", "一年半", "P1.5Y"),
        ("30分钟", "duration", "30分钟", "PT30M"),
        ("3个月", "duration", "3个月", "P3M"),
        ("体重120斤", "weight", "120斤", 60),
        ("身高一米八", "height", "一米八", 180),
        ("个子175cm", "height", "175cm", 175),
        ("气温零下3度", "temperature", "零下3度", -3),
        ("90平的房子", "area", "90平", 90),
        ("512MB内存", "data_size", "512MB", 0.5),
        ("升级到版本3.2", "version", "3.2", "3.2"),
        ("沪AD12345", "plate_number", "沪AD12345", "沪AD12345"),
        ("粤B12345D", "plate_number", "粤B12345D", "粤B12345D"),
        ("京a·12345", "plate_number", "京a·12345", "京A12345"),
        ("ticket #12345", "ticket_number", "12345", "12345"),
        ("EXP 11/2028", "card_expiry", "11/2028", "2028-11"),
        ("#周末去哪儿 分享", "hashtag", "#周末去哪儿", "周末去哪儿"),
        ("官网 www.jd.com 了解", "url", "www.jd.com", "www.jd.com"),
        ("服务器::1", "ipv6", "::1", "::1"),
        ("打95588", "service_hotline", "95588", "95588"),
        ("股票代码：000001", "stock_code", "000001", "000001"),
        ("车次D301", "train_number", "D301", "D301"),
        ("孩子3岁半", "age", "3岁半", 3.5),
    ],
)
def test_pattern_forms(text: str, type_name: str, span_text: str, value) -> None:
    found = only(extract_entities(text), type_name)
    assert [(e.text, e.value) for e in found] == [(span_text, value)], extract_entities(text)


@pytest.mark.parametrize(
    ("text", "type_name"),
    [
        ("有3点建议", "time"),  # no 上午/下午, minutes or 钟: not a clock time
        ("2024年", "duration"),
        ("2023年2月29日", "date"),  # no 29 February in 2023, and not --02-29 either
        ("2024-13-05", "date"),
        ("密码123456", "postal_code"),  # six digits need the 邮编 keyword
        ("号码123456789", "qq_number"),
        ("CVV", "cvv"),
        ("安全码12", "cvv"),
        ("订单号ABCDEFG", "order_number"),  # a keyword and a word is not an order number
        ("IP 999.1.1.1", "ipv4"),
        ("京I12345", "plate_number"),  # I and O are never plate letters
        ("12345678901", "mobile_phone"),
        ("年龄200岁", "age"),
    ],
)
def test_near_misses_are_not_extracted(text: str, type_name: str) -> None:
    assert not only(extract_entities(text), type_name), extract_entities(text)


@pytest.mark.parametrize(
    ("token", "value"),
    [
        ("三千", 3000),
        ("3万", 30000),
        ("1.5亿", 1.5e8),
        ("一亿两千万", 1.2e8),
        ("十五", 15),
        ("一百零五", 105),
        ("二〇二四", 2024),
        ("零点五", 0.5),
        ("12,500", 12500),
        ("壹仟贰佰", 1200),
        ("三万五千", 35000),
        ("两", 2),
        ("百", 100),
        ("三点五", 3.5),
        ("x", None),
    ],
)
def test_parse_number(token: str, value: float | None) -> None:
    assert parse_number(token) == value


# --- packaging -----------------------------------------------------------------------------------


def test_package_is_self_contained() -> None:
    """Only stdlib, PyYAML and the package itself: it is bundled into an MLflow pyfunc model."""
    package = REGISTRY_PATH.parent
    allowed = set(sys.stdlib_module_names) | {"yaml", "training"}
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] in allowed, f"{path.name} imports {module}"
                if module.startswith("training"):
                    assert module.startswith("training.entities"), f"{path.name}: {module}"
