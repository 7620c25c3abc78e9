"""Travel documents, business documents and keyword-anchored numbers: passports and permits,
order/ticket/invoice/contract numbers, card expiry and CVV, SWIFT and stock codes, flights,
trains, plates, postcodes, hashtags and mentions."""

from __future__ import annotations

import re

from training.entities.patterns.base import (
    GAP,
    ID_CHARS,
    PatternType,
    always,
    digits_only,
    has_digits,
    no_value,
    rule,
    upper,
    upper_keep_dashes,
)


def pattern_types() -> list[PatternType]:
    """This family's types, in the order the registry lists them."""
    return [
        _passport_number(),
        _hk_macau_permit(),
        *_keyword_ids_orders(),
        _tracking_number(),
        *_keyword_ids_documents(),
        _card_expiry(),
        _cvv(),
        _swift_code(),
        _stock_code(),
        _flight_number(),
        _train_number(),
        _plate_number(),
        _postal_code(),
        _hashtag(),
        _mention(),
    ]


def _keyword_ids_orders() -> list[PatternType]:
    """Order and service-ticket numbers (before tracking numbers in the registry)."""
    return [
        _keyword_id("order_number", r"订单(?:号码?|编号)?|交易单号", rf"{ID_CHARS}{{5,31}}", 4),
        _keyword_id(
            "ticket_number",
            r"(?:工单|服务单|投诉单|维修单|售后单|报修单)(?:号码?|编号)?"
            r"|(?<![A-Za-z])(?:ticket|case)(?: ?(?:id|no\.?|number|#))?",
            rf"{ID_CHARS}{{3,31}}",
            3,
            re.I,
        ),
    ]


def _keyword_ids_documents() -> list[PatternType]:
    """Invoices, contracts, policies, memberships and codes, known only from their keyword."""
    return [
        _keyword_id("invoice_number", r"发票号码?", r"[0-9]{20}|[0-9]{8}", 8),
        _keyword_id("invoice_code", r"发票代码", r"[0-9]{12}|[0-9]{10}", 10),
        _keyword_id("contract_number", r"合同(?:编号|号码?)", rf"{ID_CHARS}{{3,31}}", 3),
        _keyword_id("policy_number", r"保单(?:号码?|编号)", rf"{ID_CHARS}{{5,31}}", 4),
        _keyword_id("member_id", r"会员(?:卡号|号码?|编号|ID)", r"[A-Za-z0-9]{4,20}", 3, re.I),
        _keyword_id("coupon_code", r"优惠券?码|券码|兑换码|激活码|折扣码", r"[A-Za-z0-9]{4,20}", 1),
        _keyword_id("verification_code", r"验证码|校验码|动态码|动态密码|短信码", r"[0-9]{4,8}", 4),
    ]


def _passport_number() -> PatternType:
    rules = (
        rule(r"(?<![A-Za-z0-9])(?:E[0-9]{8}|E[A-HJ-NP-Z][0-9]{7}|G[0-9]{8})(?![A-Za-z0-9])"),
        rule(rf"护照(?:号码?|编号)?{GAP}(?P<v>[A-Z][A-Z0-9]{{6,8}})(?![A-Za-z0-9])", re.I),
    )
    return PatternType("passport_number", rules, upper, always)


def _hk_macau_permit() -> PatternType:
    body = r"(?:C[0-9]{8}|C[A-HJ-NP-Z][0-9]{7}|W[0-9]{8})"
    rules = (
        rule(rf"(?<![A-Za-z0-9]){body}(?![A-Za-z0-9])"),
        rule(rf"(?:港澳通行证|通行证)(?:号码?|编号)?{GAP}(?P<v>{body})(?![A-Za-z0-9])", re.I),
    )
    return PatternType("hk_macau_permit", rules, upper, always)


def _keyword_id(
    name: str, keywords: str, body: str, min_digits: int, flags: int = 0
) -> PatternType:
    """A document number known only from its keyword: 订单号, 工单号, 合同编号 ..."""
    regex = rf"(?:{keywords}){GAP}(?P<v>{body})(?![A-Za-z0-9-])"
    return PatternType(name, (rule(regex, flags),), upper_keep_dashes, has_digits(min_digits))


def _tracking_number() -> PatternType:
    keywords = r"快递单号|运单号码?|运单编号|物流单号|快递号|物流号|tracking\s*(?:no\.?|number)"
    carriers = (
        r"SF[0-9]{12,15}|YT[0-9]{13,15}|JT[0-9]{13}|JD[A-Z]{0,2}[0-9]{11,15}|[A-Z]{2}[0-9]{9}CN"
    )
    rules = (
        rule(rf"(?:{keywords}){GAP}(?P<v>[A-Za-z0-9]{{8,30}})(?![A-Za-z0-9])", re.I),
        rule(rf"(?<![A-Za-z0-9])(?:{carriers})(?![A-Za-z0-9])", strong=True),
    )
    return PatternType("tracking_number", rules, upper, has_digits(8))


def _card_expiry() -> PatternType:
    keywords = r"有效期(?:至|到)?|到期日|过期时间|exp(?:iry|iration)?(?:\s*date)?|valid\s*thru"
    body = r"(?P<mm>0[1-9]|1[0-2]) ?/ ?(?P<yy>20[0-9]{2}|[0-9]{2})"
    regex = rf"(?:{keywords}){GAP}(?P<v>{body})(?![0-9])"

    def value(match: re.Match[str]) -> str:
        return f"20{match.group('yy')[-2:]}-{match.group('mm')}"

    return PatternType("card_expiry", (rule(regex, re.I),), value, always)


def _cvv() -> PatternType:
    regex = (
        rf"(?:CVV2?|CVC2?|CVN2?|安全码|卡背面?后?三位(?:数字)?){GAP}(?P<v>[0-9]{{3,4}})(?![0-9])"
    )
    return PatternType("cvv", (rule(regex, re.I),), no_value, always)


def _swift_code() -> PatternType:
    regex = (
        rf"(?:SWIFT|BIC)(?: ?(?:code|码|代码|编码))?{GAP}"
        r"(?P<v>[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?)(?![A-Za-z0-9])"
    )
    return PatternType("swift_code", (rule(regex, re.I),), upper, always)


def _stock_code() -> PatternType:
    rules = (
        rule(
            r"(?<![0-9A-Za-z])(?:[0-9]{6}\.(?:SH|SZ|BJ)|[0-9]{4,5}\.HK)(?![A-Za-z0-9])",
            re.I,
            strong=True,
        ),
        rule(rf"(?:股票代码|证券代码|股票代号){GAP}(?P<v>[0-9]{{6}})(?![0-9])"),
    )
    return PatternType("stock_code", rules, upper, always)


def _flight_number() -> PatternType:
    airlines = (
        "CA|MU|CZ|HU|3U|ZH|MF|SC|9C|HO|CX|KA|HX|UO|NX|FM|GS|KN|JD|PN|8L|EU|BK|G5|KY|TV|QW|GJ|"
        "DZ|NS|NH|JL|KE|OZ|SQ|TG|EK|QR|LH|AF|BA|UA|DL|AA|AC|QF|CI|BR"
    )
    regex = rf"(?<![A-Za-z0-9])(?:{airlines}) ?[0-9]{{3,4}}(?![A-Za-z0-9])"
    return PatternType("flight_number", (rule(regex),), upper, always)


def _train_number() -> PatternType:
    rules = (
        rule(rf"(?:车次|列车|高铁|动车|火车){GAP}(?P<v>[GDCZTKYSL][0-9]{{1,4}})(?![0-9A-Za-z])"),
        rule(r"(?<![A-Za-z0-9])(?P<v>[GDCZTK][0-9]{1,4})(?=次)"),
    )
    return PatternType("train_number", rules, upper, always)


def _plate_number() -> PatternType:
    provinces = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
    letter = "A-HJ-NP-Z"
    tail = rf"[DF][{letter}0-9][0-9]{{4}}|[0-9]{{5}}[DF]|[{letter}0-9]{{4}}[{letter}0-9挂学警港澳]"
    regex = rf"[{provinces}][{letter}][·•\s-]?(?P<tail>{tail})(?![A-Za-z0-9])"

    def valid(match: re.Match[str]) -> bool:
        return sum(char.isdigit() for char in match.group("tail")) >= 3

    return PatternType("plate_number", (rule(regex, re.I, strong=True),), upper, valid)


def _postal_code() -> PatternType:
    regex = rf"(?:邮编|邮政编码|邮码){GAP}(?P<v>[0-9]{{6}})(?![0-9])"
    return PatternType("postal_code", (rule(regex),), digits_only, always)


def _hashtag() -> PatternType:
    rules = (
        rule(r"(?<![A-Za-z0-9&])#(?P<topic>[^#\s]{1,40})#"),
        rule(r"(?<![A-Za-z0-9&])#(?P<topic>[\u4e00-\u9fffA-Za-z][\u4e00-\u9fffA-Za-z0-9_]{0,29})"),
    )
    return PatternType(
        "hashtag",
        rules,
        lambda match: match.group("topic"),
        lambda match: not match.group("topic").isdigit(),
    )


def _mention() -> PatternType:
    regex = r"(?<![A-Za-z0-9_.\-])@(?P<handle>[\u4e00-\u9fffA-Za-z0-9_\-]{2,30})"
    return PatternType("mention", (rule(regex),), lambda match: match.group("handle"), always)
