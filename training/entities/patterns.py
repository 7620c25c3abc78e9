"""Regex-and-validator entity types: identifiers, contact points, money, dates and measures.

Every rule runs on the NFKC text (see textnorm), so full-width input needs no extra cases.
A rule whose regex has a group named `v` is keyword-anchored: the keyword (订单号, QQ, 邮编 ...)
must be present but only `v` is reported, and the keyword makes the match outrank bare formats
(see `extract.resolve`). `strong` marks bare formats specific enough (checksums, fixed prefixes)
to outrank any span they overlap.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from training.entities import validators
from training.entities.numerals import CN_DIGITS, NUMBER, format_number, parse_number, tidy

Value = str | int | float | None
ValueFn = Callable[[re.Match[str]], Value]
ValidFn = Callable[[re.Match[str]], bool]

RANK_KEYWORD, RANK_STRONG, RANK_PLAIN = 2, 1, 0
_GAP = r"[\s:=#是为]{0,3}"  # between a keyword and its value: "QQ号：", "邮编是 ", "工单#"
_ID_CHARS = r"[A-Za-z0-9][A-Za-z0-9-]"


@dataclass(frozen=True, slots=True)
class Rule:
    """One regex of a type. `strong`: the bare format alone is near-certain evidence."""

    regex: re.Pattern[str]
    strong: bool = False

    @property
    def keyword(self) -> bool:
        """Keyword-anchored rules report only their `v` group."""
        return "v" in self.regex.groupindex


@dataclass(frozen=True, slots=True)
class PatternType:
    """A pattern entity type: its rules, a validator that can veto a match, and its normaliser."""

    name: str
    rules: tuple[Rule, ...]
    value: ValueFn
    valid: ValidFn


@dataclass(frozen=True, slots=True)
class PatternMatch:
    """A validated match in normalised-text coordinates."""

    start: int
    end: int
    type: str
    value: Value
    rank: int


def _rule(pattern: str, flags: int = 0, strong: bool = False) -> Rule:
    return Rule(re.compile(pattern, flags), strong)


def _group(match: re.Match[str], name: str) -> str | None:
    """A named group's text, or None when the rule has no such group or it did not take part."""
    return match.group(name) if name in match.re.groupindex else None


def core(match: re.Match[str]) -> str:
    """The reported text: the `v` group of keyword rules, else the whole match."""
    value = _group(match, "v")
    return match.group(0) if value is None else value


def _always(_: re.Match[str]) -> bool:
    return True


def _none(_: re.Match[str]) -> Value:
    return None


def _upper(match: re.Match[str]) -> str:
    """Identifier as written, upper-cased and without separators."""
    return re.sub(r"[\s·•-]", "", core(match)).upper()


def _upper_keep_dashes(match: re.Match[str]) -> str:
    """Document numbers (GD-2024-0315) keep their dashes: they are part of the number."""
    return core(match).upper()


def _digits(match: re.Match[str]) -> str:
    return re.sub(r"[^0-9]", "", core(match))


def _has_digits(count: int) -> ValidFn:
    """Order/ticket numbers must contain digits: keyword + plain word is not an identifier."""
    return lambda match: sum(char.isdigit() for char in core(match)) >= count


def _checked(check: Callable[[str], bool], clean: ValueFn = _upper) -> ValidFn:
    """Validator that runs a checksum on the separator-free match."""
    return lambda match: check(str(clean(match)))


def _number(match: re.Match[str], group: str = "n") -> float | None:
    token = _group(match, group)
    return None if token is None else parse_number(token)


def _numeric(match: re.Match[str]) -> bool:
    return _number(match) is not None


def _scaled(units: dict[str, float], digits: int = 6) -> ValueFn:
    """Normaliser for measures: number times the factor of its unit, in the type's base unit."""

    def value(match: re.Match[str]) -> Value:
        number = _number(match)
        factor = units[match.group("u").lower()]
        return None if number is None else tidy(round(number * factor, digits))

    return value


# --- identifiers with check digits -------------------------------------------------------


def _resident_id() -> PatternType:
    regex = r"(?<![0-9A-Za-z])[1-9][0-9]{5} ?[0-9]{8} ?[0-9]{3}[0-9Xx](?![0-9A-Za-z])"
    return PatternType(
        "resident_id", (_rule(regex, strong=True),), _upper, _checked(validators.resident_id_18)
    )


def _resident_id_15() -> PatternType:
    regex = r"(?<![0-9A-Za-z])[1-9][0-9]{14}(?![0-9A-Za-z])"
    return PatternType(
        "resident_id_15", (_rule(regex),), _upper, _checked(validators.resident_id_15)
    )


def _credit_code() -> PatternType:
    chars = "[0-9A-HJ-NPQRTUWXY]"
    regex = rf"(?<![0-9A-Za-z]){chars}{{2}}[0-9]{{6}}{chars}{{10}}(?![0-9A-Za-z])"
    return PatternType(
        "credit_code", (_rule(regex, re.I, strong=True),), _upper, _checked(validators.credit_code)
    )


def _bank_card() -> PatternType:
    regex = r"(?<![0-9])[3-6][0-9]{3}(?:[ -]?[0-9]){12,15}(?![0-9])"
    return PatternType(
        "bank_card", (_rule(regex, strong=True),), _digits, _checked(validators.luhn, _digits)
    )


def _iban() -> PatternType:
    groups = r"(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?"
    regex = rf"(?<![A-Za-z0-9])[A-Z]{{2}}[0-9]{{2}}{groups}(?![A-Za-z0-9])"
    return PatternType("iban", (_rule(regex, strong=True),), _upper, _checked(validators.iban))


def _vin() -> PatternType:
    body = r"[A-HJ-NPR-Z0-9]{17}"
    rules = (
        _rule(rf"(?<![A-Za-z0-9]){body}(?![A-Za-z0-9])", strong=True),
        _rule(rf"(?:车架号|VIN码?|车辆识别(?:代号|码)){_GAP}(?P<v>{body})(?![A-Za-z0-9])", re.I),
    )

    def valid(match: re.Match[str]) -> bool:
        code = core(match).upper()
        return not code.isdigit() and not code.isalpha() and validators.vin(code)

    return PatternType("vin", rules, _upper, valid)


def _imei() -> PatternType:
    regex = rf"(?:IMEI|串号|设备识别码)(?:号|码)?{_GAP}(?P<v>[0-9]{{15}})(?![0-9])"
    return PatternType("imei", (_rule(regex, re.I),), _digits, _checked(validators.luhn, _digits))


# --- contact points and network addresses -------------------------------------------------


def _mobile_phone() -> PatternType:
    regex = r"(?<![0-9])(?:\(?(?:\+|00)?86\)?[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}(?![0-9])"
    return PatternType(
        "mobile_phone", (_rule(regex, strong=True),), lambda match: _digits(match)[-11:], _always
    )


def _landline_phone() -> PatternType:
    area = r"(?P<area>\(0[0-9]{2,3}\)|0(?:10|2[0-9]|[3-9][0-9]{2}))"
    regex = (
        rf"(?<![0-9]){area}[ -]?(?P<local>[2-9][0-9]{{6,7}})"
        r"(?:(?:转|-|ext\.? ?)(?P<ext>[0-9]{1,5}))?(?![0-9])"
    )

    def value(match: re.Match[str]) -> str:
        parts = [match.group("area").strip("()"), match.group("local"), match.group("ext")]
        return "-".join(part for part in parts if part)

    return PatternType("landline_phone", (_rule(regex, strong=True),), value, _always)


def _service_hotline() -> PatternType:
    known = (
        "95588|95533|95555|95566|95599|95559|95508|95568|95595|95528|95558|95561|95577|"
        "95580|95338|10086|10010|12315|12306|12366"
    )
    rules = (
        _rule(r"(?<![0-9])[48]00[ -]?[0-9]{3}[ -]?[0-9]{4}(?![0-9])", strong=True),
        _rule(rf"(?<![0-9A-Za-z])(?:{known})(?![0-9])", strong=True),
    )
    return PatternType("service_hotline", rules, _digits, _always)


def _email() -> PatternType:
    regex = (
        r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
        r"\.[A-Za-z]{2,}(?![A-Za-z0-9-])"
    )
    return PatternType(
        "email", (_rule(regex, strong=True),), lambda match: match.group(0).lower(), _always
    )


def _url() -> PatternType:
    tail = r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*[A-Za-z0-9\-_~/#=&%]"
    domain = r"(?:[A-Za-z0-9-]+\.)+(?:com\.cn|gov\.cn|edu\.cn|com|cn|net|org|io|top|xyz)"
    rules = (
        _rule(rf"(?:https?://|www\.){tail}", re.I, strong=True),
        _rule(rf"(?<![A-Za-z0-9@.\-/]){domain}(?:/{tail})?(?![A-Za-z0-9])", re.I, strong=True),
    )
    return PatternType("url", rules, lambda match: match.group(0), _always)


def _ip(version: int) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        try:
            return ipaddress.ip_address(text).version == version
        except ValueError:
            return False

    return check


def _ipv4() -> PatternType:
    regex = r"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?!\.?[0-9])"
    return PatternType(
        "ipv4",
        (_rule(regex, strong=True),),
        lambda match: match.group(0),
        lambda match: _ip(4)(match.group(0)),
    )


def _ipv6() -> PatternType:
    hex4 = "[0-9A-Fa-f]{1,4}"
    regex = (
        rf"(?<![0-9A-Za-z])(?:{hex4}(?::[0-9A-Fa-f]{{0,4}}){{2,7}}|::{hex4}(?::{hex4}){{0,6}})"
        r"(?![0-9A-Za-z:])"
    )
    return PatternType(
        "ipv6",
        (_rule(regex, strong=True),),
        lambda match: str(ipaddress.IPv6Address(match.group(0))),
        lambda match: _ip(6)(match.group(0)),
    )


def _mac_address() -> PatternType:
    pair = "[0-9A-Fa-f]{2}"
    regex = rf"(?<![0-9A-Fa-f:-]){pair}([:-]){pair}(?:\1{pair}){{4}}(?![0-9A-Fa-f:-])"
    return PatternType(
        "mac_address",
        (_rule(regex, strong=True),),
        lambda match: match.group(0).upper().replace("-", ":"),
        _always,
    )


def _qq_number() -> PatternType:
    regex = rf"(?:QQ|扣扣)(?:号码?)?{_GAP}(?P<v>[1-9][0-9]{{4,11}})(?![0-9])"
    return PatternType("qq_number", (_rule(regex, re.I),), _digits, _always)


def _wechat_id() -> PatternType:
    chinese = rf"(?:微信号?|v信|薇信|威信){_GAP}"
    latin = r"(?<![A-Za-z0-9_])(?:wechat|weixin|wx|vx)[\s:=]{1,3}"  # "wxid_..." is not wx + id
    keyword = f"(?:{chinese}|{latin})"
    regex = rf"{keyword}(?P<v>[A-Za-z][-_A-Za-z0-9]{{5,19}})(?![-_A-Za-z0-9])"
    return PatternType("wechat_id", (_rule(regex, re.I),), core, _always)


# --- travel documents, business documents, keyword-anchored numbers -----------------------


def _passport_number() -> PatternType:
    rules = (
        _rule(r"(?<![A-Za-z0-9])(?:E[0-9]{8}|E[A-HJ-NP-Z][0-9]{7}|G[0-9]{8})(?![A-Za-z0-9])"),
        _rule(rf"护照(?:号码?|编号)?{_GAP}(?P<v>[A-Z][A-Z0-9]{{6,8}})(?![A-Za-z0-9])", re.I),
    )
    return PatternType("passport_number", rules, _upper, _always)


def _hk_macau_permit() -> PatternType:
    body = r"(?:C[0-9]{8}|C[A-HJ-NP-Z][0-9]{7}|W[0-9]{8})"
    rules = (
        _rule(rf"(?<![A-Za-z0-9]){body}(?![A-Za-z0-9])"),
        _rule(rf"(?:港澳通行证|通行证)(?:号码?|编号)?{_GAP}(?P<v>{body})(?![A-Za-z0-9])", re.I),
    )
    return PatternType("hk_macau_permit", rules, _upper, _always)


def _keyword_id(
    name: str, keywords: str, body: str, min_digits: int, flags: int = 0
) -> PatternType:
    """A document number known only from its keyword: 订单号, 工单号, 合同编号 ..."""
    regex = rf"(?:{keywords}){_GAP}(?P<v>{body})(?![A-Za-z0-9-])"
    return PatternType(name, (_rule(regex, flags),), _upper_keep_dashes, _has_digits(min_digits))


def _tracking_number() -> PatternType:
    keywords = r"快递单号|运单号码?|运单编号|物流单号|快递号|物流号|tracking\s*(?:no\.?|number)"
    carriers = (
        r"SF[0-9]{12,15}|YT[0-9]{13,15}|JT[0-9]{13}|JD[A-Z]{0,2}[0-9]{11,15}|[A-Z]{2}[0-9]{9}CN"
    )
    rules = (
        _rule(rf"(?:{keywords}){_GAP}(?P<v>[A-Za-z0-9]{{8,30}})(?![A-Za-z0-9])", re.I),
        _rule(rf"(?<![A-Za-z0-9])(?:{carriers})(?![A-Za-z0-9])", strong=True),
    )
    return PatternType("tracking_number", rules, _upper, _has_digits(8))


def _card_expiry() -> PatternType:
    keywords = r"有效期(?:至|到)?|到期日|过期时间|exp(?:iry|iration)?(?:\s*date)?|valid\s*thru"
    body = r"(?P<mm>0[1-9]|1[0-2]) ?/ ?(?P<yy>20[0-9]{2}|[0-9]{2})"
    regex = rf"(?:{keywords}){_GAP}(?P<v>{body})(?![0-9])"

    def value(match: re.Match[str]) -> str:
        return f"20{match.group('yy')[-2:]}-{match.group('mm')}"

    return PatternType("card_expiry", (_rule(regex, re.I),), value, _always)


def _cvv() -> PatternType:
    regex = (
        rf"(?:CVV2?|CVC2?|CVN2?|安全码|卡背面?后?三位(?:数字)?){_GAP}(?P<v>[0-9]{{3,4}})(?![0-9])"
    )
    return PatternType("cvv", (_rule(regex, re.I),), _none, _always)


def _swift_code() -> PatternType:
    regex = (
        rf"(?:SWIFT|BIC)(?: ?(?:code|码|代码|编码))?{_GAP}"
        r"(?P<v>[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?)(?![A-Za-z0-9])"
    )
    return PatternType("swift_code", (_rule(regex, re.I),), _upper, _always)


def _stock_code() -> PatternType:
    rules = (
        _rule(
            r"(?<![0-9A-Za-z])(?:[0-9]{6}\.(?:SH|SZ|BJ)|[0-9]{4,5}\.HK)(?![A-Za-z0-9])",
            re.I,
            strong=True,
        ),
        _rule(rf"(?:股票代码|证券代码|股票代号){_GAP}(?P<v>[0-9]{{6}})(?![0-9])"),
    )
    return PatternType("stock_code", rules, _upper, _always)


def _flight_number() -> PatternType:
    airlines = (
        "CA|MU|CZ|HU|3U|ZH|MF|SC|9C|HO|CX|KA|HX|UO|NX|FM|GS|KN|JD|PN|8L|EU|BK|G5|KY|TV|QW|GJ|"
        "DZ|NS|NH|JL|KE|OZ|SQ|TG|EK|QR|LH|AF|BA|UA|DL|AA|AC|QF|CI|BR"
    )
    regex = rf"(?<![A-Za-z0-9])(?:{airlines}) ?[0-9]{{3,4}}(?![A-Za-z0-9])"
    return PatternType("flight_number", (_rule(regex),), _upper, _always)


def _train_number() -> PatternType:
    rules = (
        _rule(rf"(?:车次|列车|高铁|动车|火车){_GAP}(?P<v>[GDCZTKYSL][0-9]{{1,4}})(?![0-9A-Za-z])"),
        _rule(r"(?<![A-Za-z0-9])(?P<v>[GDCZTK][0-9]{1,4})(?=次)"),
    )
    return PatternType("train_number", rules, _upper, _always)


def _plate_number() -> PatternType:
    provinces = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
    letter = "A-HJ-NP-Z"
    tail = rf"[DF][{letter}0-9][0-9]{{4}}|[0-9]{{5}}[DF]|[{letter}0-9]{{4}}[{letter}0-9挂学警港澳]"
    regex = rf"[{provinces}][{letter}][·•\s-]?(?P<tail>{tail})(?![A-Za-z0-9])"

    def valid(match: re.Match[str]) -> bool:
        return sum(char.isdigit() for char in match.group("tail")) >= 3

    return PatternType("plate_number", (_rule(regex, re.I, strong=True),), _upper, valid)


def _postal_code() -> PatternType:
    regex = rf"(?:邮编|邮政编码|邮码){_GAP}(?P<v>[0-9]{{6}})(?![0-9])"
    return PatternType("postal_code", (_rule(regex),), _digits, _always)


def _hashtag() -> PatternType:
    rules = (
        _rule(r"(?<![A-Za-z0-9&])#(?P<topic>[^#\s]{1,40})#"),
        _rule(r"(?<![A-Za-z0-9&])#(?P<topic>[\u4e00-\u9fffA-Za-z][\u4e00-\u9fffA-Za-z0-9_]{0,29})"),
    )
    return PatternType(
        "hashtag",
        rules,
        lambda match: match.group("topic"),
        lambda match: not match.group("topic").isdigit(),
    )


def _mention() -> PatternType:
    regex = r"(?<![A-Za-z0-9_.\-])@(?P<handle>[\u4e00-\u9fffA-Za-z0-9_\-]{2,30})"
    return PatternType("mention", (_rule(regex),), lambda match: match.group("handle"), _always)


# --- money, ratios, loyalty ----------------------------------------------------------------


def _amount(name: str, prefixes: str, suffixes: str) -> PatternType:
    """Money in one currency: prefix form (¥12.5, US$3) or suffix form (12.50元, 3万美元)."""
    rules = (
        _rule(rf"(?:{prefixes}) ?(?P<n>{NUMBER})(?: ?(?:{suffixes}))?整?", re.I),
        _rule(rf"(?P<n>{NUMBER}) ?(?:{suffixes})整?", re.I),
    )
    return PatternType(name, rules, lambda match: tidy(_number(match) or 0.0), _numeric)


def _percentage() -> PatternType:
    rules = (
        _rule(rf"(?P<n>{NUMBER}) ?%"),
        _rule(rf"百分之(?P<n>{NUMBER})"),
        _rule(rf"千分之(?P<n>{NUMBER})"),
    )

    def value(match: re.Match[str]) -> str:
        number = _number(match) or 0.0
        return f"{format_number(number / 10 if match.group(0).startswith('千') else number)}%"

    return PatternType("percentage", rules, value, _numeric)


def _discount() -> PatternType:
    digits = "一二三四五六七八九"
    number = rf"[0-9]{{2}}|[0-9](?:\.[0-9])?|[{digits}]{{1,2}}|[{digits}]点[{digits}]"
    regex = rf"(?<![0-9.])(?P<n>{number})折(?![扣叠旧合算])"

    def value(match: re.Match[str]) -> float:
        token = match.group("n")
        if len(token) == 2 and "." not in token and "点" not in token:
            return round(float("".join(str(CN_DIGITS.get(c, c)) for c in token)) / 100, 4)
        return round((parse_number(token) or 0.0) / 10, 4)

    return PatternType("discount", (_rule(regex),), value, _always)


def _loyalty_points() -> PatternType:
    regex = rf"(?P<n>{NUMBER}) ?个?积分"
    return PatternType(
        "loyalty_points", (_rule(regex),), lambda match: tidy(_number(match) or 0.0), _numeric
    )


# --- dates, times, durations ----------------------------------------------------------------

_CN_YEAR = "[〇零一二三四五六七八九]{4}"
_MONTH = r"(?P<m>[0-9]{1,2}|十[一二]?|[一二三四五六七八九])"
_DAY = r"(?P<d>[0-9]{1,2}|[一二三]?十[一二三四五六七八九]?|[一二三四五六七八九])"


def _date_value(match: re.Match[str]) -> str | None:
    """ISO 8601: 2024-03-05, 2024-03 (no day) or --03-05 (no year), None if not a real date."""
    year_text = _group(match, "y")
    year = None
    if year_text:
        year = int("".join(str(CN_DIGITS.get(char, char)) for char in year_text))
    month = parse_number(match.group("m"))
    day_text = _group(match, "d")
    day = parse_number(day_text) if day_text else 1
    if month is None or day is None:
        return None
    month, day = int(month), int(day)
    if not validators.is_real_date(year or 2000, month, day):
        return None
    if year is None:
        return f"--{month:02d}-{day:02d}"
    return f"{year:04d}-{month:02d}" + (f"-{day:02d}" if day_text else "")


def _date() -> PatternType:
    rules = (
        _rule(rf"(?<![0-9])(?P<y>[0-9]{{4}}|{_CN_YEAR}) ?年 ?{_MONTH} ?月(?: ?{_DAY} ?[日号])?"),
        _rule(
            r"(?<![0-9.])(?P<y>[0-9]{4})(?P<sep>[-/.])(?P<m>[0-9]{1,2})(?P=sep)(?P<d>[0-9]{1,2})"
            r"(?!\.?[0-9])"
        ),
        _rule(rf"(?<![0-9年]){_MONTH} ?月 ?{_DAY} ?[日号]"),  # not the tail of a bad full date
    )
    return PatternType("date", rules, _date_value, lambda match: _date_value(match) is not None)


def _relative_date() -> PatternType:
    regex = (
        r"大后天|大前天|今天|明天|后天|昨天|前天|今日|明日|昨日|今晚|明早|明晚|"
        r"(?:上|下|这|本)个?(?:周|星期|礼拜)[一二三四五六日天末]?|"
        r"(?:上|下|这|本)个?月(?:初|底|末)?|(?:今|明|去|前|后)年(?:初|底)?"
    )
    return PatternType("relative_date", (_rule(regex),), _none, _always)


_PERIOD_SHIFT = {"下午": 12, "傍晚": 12, "晚上": 12, "夜里": 12, "中午": 12}
_QUARTERS = {"半": 30, "一刻": 15, "三刻": 45}


def _clock(match: re.Match[str]) -> tuple[int, int] | None:
    """(hour, minute) of a Chinese clock time, with 下午/晚上 shifted to the 24-hour clock."""
    hour = parse_number(match.group("h"))
    minute_text, quarter = match.group("mi"), match.group("q")
    minute = _QUARTERS[quarter] if quarter else parse_number(minute_text) if minute_text else 0
    if hour is None or minute is None:
        return None
    hour, minute = int(hour), int(minute)
    period = match.group("p")
    if period in _PERIOD_SHIFT and hour < 12 and not (period == "中午" and hour >= 11):
        hour += 12
    if period == "凌晨" and hour == 12:
        hour = 0
    return (hour, minute) if hour < 24 and minute < 60 else None


def _time() -> PatternType:
    period = r"(?P<p>凌晨|早上|早晨|清晨|上午|中午|下午|傍晚|晚上|夜里|半夜)"
    hour = r"(?P<h>[0-9]{1,2}|二十[一二三]?|十[一二]?|[一二两三四五六七八九])"
    fraction = r"(?P<mi>[0-9]{1,2}|[一二三四五]?十[一二三四五六七八九]?|零?[一二三四五六七八九])分?"
    rules = (
        _rule(
            r"(?<![0-9])(?<![0-9]:)(?P<H>[01]?[0-9]|2[0-3]):(?P<M>[0-5][0-9])(?::(?P<S>[0-5][0-9]))?"
            r"(?!:?[0-9])"
        ),
        _rule(
            rf"(?:{period} ?)?(?<![0-9]){hour} ?[点时](?:(?P<q>半|一刻|三刻)|{fraction})?(?P<z>钟)?"
        ),
    )

    def value(match: re.Match[str]) -> str | None:
        if _group(match, "H") is not None:
            seconds = f":{match.group('S')}" if match.group("S") else ""
            return f"{int(match.group('H')):02d}:{match.group('M')}{seconds}"
        clock = _clock(match)
        return None if clock is None else f"{clock[0]:02d}:{clock[1]:02d}"

    def valid(match: re.Match[str]) -> bool:
        if _group(match, "H") is None and not any(match.group(g) for g in ("p", "q", "mi", "z")):
            return False  # a bare "3点" is as often "3 points" as 3 o'clock
        return value(match) is not None

    return PatternType("time", rules, value, valid)


_DURATION_UNITS = {
    "年": ("Y", False),
    "个月": ("M", False),
    "个多月": ("M", False),
    "周": ("W", False),
    "星期": ("W", False),
    "个星期": ("W", False),
    "个礼拜": ("W", False),
    "礼拜": ("W", False),
    "天": ("D", False),
    "小时": ("H", True),
    "个小时": ("H", True),
    "钟头": ("H", True),
    "个钟头": ("H", True),
    "分钟": ("M", True),
    "秒钟": ("S", True),
    "秒": ("S", True),
}


def _duration() -> PatternType:
    units = "|".join(sorted(_DURATION_UNITS, key=len, reverse=True))
    rules = (
        _rule(rf"(?P<n>{NUMBER}) ?(?P<u>{units})(?P<half>半)?(?!级)"),
        _rule(rf"(?P<h2>半)个?(?P<u>{units})"),
    )

    def amount(match: re.Match[str]) -> float | None:
        if _group(match, "h2"):
            return 0.5
        number = _number(match)
        return None if number is None else number + (0.5 if match.group("half") else 0.0)

    def value(match: re.Match[str]) -> str:
        unit, is_time = _DURATION_UNITS[match.group("u")]
        return f"P{'T' if is_time else ''}{format_number(amount(match) or 0.0)}{unit}"

    def valid(match: re.Match[str]) -> bool:
        number = amount(match)
        return number is not None and not (match.group("u") == "年" and number >= 1000)

    return PatternType("duration", rules, value, valid)


# --- people and physical measures ------------------------------------------------------------


def _age() -> PatternType:
    regex = rf"(?P<n>{NUMBER}) ?周?岁(?P<half>半)?"

    def value(match: re.Match[str]) -> Value:
        return tidy((_number(match) or 0.0) + (0.5 if match.group("half") else 0.0))

    return PatternType("age", (_rule(regex),), value, lambda match: (_number(match) or 999) <= 150)


_WEIGHT_KG = {
    "公斤": 1,
    "千克": 1,
    "kg": 1,
    "斤": 0.5,
    "克": 0.001,
    "g": 0.001,
    "毫克": 1e-6,
    "mg": 1e-6,
    "吨": 1000,
    "磅": 0.45359237,
    "lb": 0.45359237,
    "lbs": 0.45359237,
}
_HEIGHT_CM = {"厘米": 1, "公分": 1, "cm": 1, "米": 100, "m": 100}
_AREA_M2 = {
    "平方米": 1,
    "平米": 1,
    "平方": 1,
    "平": 1,
    "m2": 1,
    "平方公里": 1e6,
    "平方千米": 1e6,
    "km2": 1e6,
    "亩": 10000 / 15,
    "公顷": 10000,
}
_DISTANCE_M = {
    "公里": 1000,
    "千米": 1000,
    "km": 1000,
    "米": 1,
    "m": 1,
    "厘米": 0.01,
    "cm": 0.01,
    "毫米": 0.001,
    "mm": 0.001,
    "英里": 1609.344,
}
_VOLUME_L = {"毫升": 0.001, "ml": 0.001, "升": 1, "l": 1}
_DATA_GB = {"tb": 1024, "gb": 1, "mb": 1 / 1024, "kb": 1 / 1024**2}


def _alternation(units: Iterable[str], guards: dict[str, str] | None = None) -> str:
    """Units longest first (平方米 before 平, mm before m); `guards` add a lookahead to a unit."""
    guards = guards or {}
    return "|".join(unit + guards.get(unit, "") for unit in sorted(units, key=len, reverse=True))


def _measure(name: str, units: dict[str, float], alternation: str, digits: int = 6) -> PatternType:
    """NUMBER + unit, normalised to the type's base unit (kg, m², m, L: the unit worth 1)."""
    regex = rf"(?P<n>{NUMBER}) ?(?P<u>{alternation})(?![A-Za-z0-9])"
    return PatternType(name, (_rule(regex),), _scaled(units, digits), _numeric)


def _height() -> PatternType:
    digits = "0-9一二三四五六七八九零〇"
    body = (
        rf"(?P<a>[12一]) ?米 ?(?P<b>[{digits}]{{1,2}})(?![0-9])"
        rf"|(?P<n>{NUMBER}) ?(?P<u>厘米|公分|cm|米|m)(?![A-Za-z0-9])"
    )
    regex = rf"(?:净身高|身高|个子|个头)[\s:是有约]{{0,3}}(?P<v>{body})"

    def value(match: re.Match[str]) -> Value:
        if match.group("a"):
            rest = match.group("b")
            centimetres = parse_number(rest) or 0.0
            if len(rest) == 1:
                centimetres *= 10  # 1米8 is 180 cm, 1米75 (一米七五) is 175 cm
            return tidy((parse_number(match.group("a")) or 0.0) * 100 + centimetres)
        return tidy(round((_number(match) or 0.0) * _HEIGHT_CM[match.group("u").lower()], 2))

    return PatternType("height", (_rule(regex, re.I),), value, _always)


def _temperature() -> PatternType:
    units = r"°C|°F|摄氏度|华氏度"
    rules = (
        _rule(rf"(?P<neg>零下|负|-)?(?P<n>{NUMBER}) ?(?P<u>{units})"),
        _rule(
            rf"(?:体温|气温|温度|室温|水温|发烧|烧到|高烧)[\s:是有了到约]{{0,3}}"
            rf"(?P<v>(?P<neg>零下|负)?(?P<n>{NUMBER}) ?(?P<u>度))"
        ),
    )

    def value(match: re.Match[str]) -> Value:
        degrees = (_number(match) or 0.0) * (-1 if match.group("neg") else 1)
        if match.group("u") in ("°F", "华氏度"):
            degrees = (degrees - 32) * 5 / 9
        return tidy(round(degrees, 1))

    return PatternType("temperature", rules, value, _numeric)


def _data_size() -> PatternType:
    regex = rf"(?P<n>{NUMBER}) ?(?P<u>TB|GB|MB|KB)(?![A-Za-z0-9])"
    return PatternType("data_size", (_rule(regex, re.I),), _scaled(_DATA_GB), _numeric)


def _version() -> PatternType:
    dotted = r"[0-9]+(?:\.[0-9]+){1,3}"
    rules = (
        _rule(rf"(?<![A-Za-z0-9.])[vV](?P<ver>{dotted})(?!\.?[0-9])"),
        _rule(r"(?<![A-Za-z0-9.])(?P<ver>[0-9]+\.[0-9]+\.[0-9]+(?:\.[0-9]+)?)(?!\.?[0-9])"),
        _rule(rf"(?:版本号?|version|ver\.?){_GAP}(?P<v>[vV]?(?P<ver>{dotted}))(?!\.?[0-9])", re.I),
    )
    return PatternType("version", rules, lambda match: match.group("ver"), _always)


_MEASURE_WORDS = "个件台张本瓶箱盒包支双套份条只辆部把袋罐杯片颗粒位名间栋笔单桶顶副枚"


def _quantity() -> PatternType:
    regex = rf"(?P<n>{NUMBER}) ?(?P<u>[{_MEASURE_WORDS}]|块(?!钱))"
    return PatternType(
        "quantity", (_rule(regex),), lambda match: tidy(_number(match) or 0.0), _numeric
    )


def build_pattern_types() -> dict[str, PatternType]:
    """Every pattern type by name; the registry decides which are used and in what order."""
    cny, usd = r"¥|RMB|CNY|人民币", r"US\$|USD|\$"
    types = [
        _resident_id(),
        _resident_id_15(),
        _credit_code(),
        _bank_card(),
        _iban(),
        _vin(),
        _imei(),
        _mobile_phone(),
        _landline_phone(),
        _service_hotline(),
        _email(),
        _url(),
        _ipv4(),
        _ipv6(),
        _mac_address(),
        _qq_number(),
        _wechat_id(),
        _passport_number(),
        _hk_macau_permit(),
        _keyword_id("order_number", r"订单(?:号码?|编号)?|交易单号", rf"{_ID_CHARS}{{5,31}}", 4),
        _keyword_id(
            "ticket_number",
            r"(?:工单|服务单|投诉单|维修单|售后单|报修单)(?:号码?|编号)?"
            r"|(?<![A-Za-z])(?:ticket|case)(?: ?(?:id|no\.?|number|#))?",
            rf"{_ID_CHARS}{{3,31}}",
            3,
            re.I,
        ),
        _tracking_number(),
        _keyword_id("invoice_number", r"发票号码?", r"[0-9]{20}|[0-9]{8}", 8),
        _keyword_id("invoice_code", r"发票代码", r"[0-9]{12}|[0-9]{10}", 10),
        _keyword_id("contract_number", r"合同(?:编号|号码?)", rf"{_ID_CHARS}{{3,31}}", 3),
        _keyword_id("policy_number", r"保单(?:号码?|编号)", rf"{_ID_CHARS}{{5,31}}", 4),
        _keyword_id("member_id", r"会员(?:卡号|号码?|编号|ID)", r"[A-Za-z0-9]{4,20}", 3, re.I),
        _keyword_id("coupon_code", r"优惠券?码|券码|兑换码|激活码|折扣码", r"[A-Za-z0-9]{4,20}", 1),
        _keyword_id("verification_code", r"验证码|校验码|动态码|动态密码|短信码", r"[0-9]{4,8}", 4),
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
        _amount("amount_cny", cny, r"元|块钱|圆|人民币"),
        _amount("amount_usd", usd, r"美元|美金|USD"),
        _amount("amount_eur", r"€|EUR", r"欧元|EUR"),
        _amount("amount_hkd", r"HK\$|HKD|港币", r"港币|港元|HKD"),
        _amount("amount_jpy", r"JPY|円", r"日元|日币|円|JPY"),
        _amount("amount_gbp", r"£|GBP", r"英镑|GBP"),
        _percentage(),
        _discount(),
        _loyalty_points(),
        _date(),
        _relative_date(),
        _time(),
        _duration(),
        _age(),
        _measure("weight", _WEIGHT_KG, _alternation([*_WEIGHT_KG, "KG", "Kg"])),
        _height(),
        # bare 平 only where it cannot start a word: 90平的房子, not 90平台 / 90平安
        _measure("area", _AREA_M2, _alternation(_AREA_M2, {"平": "(?![台安时均常])"}), digits=2),
        _temperature(),
        _measure("distance", _DISTANCE_M, _alternation([*_DISTANCE_M, "KM", "Km"])),
        # no lower-case "l": 3l is more often a typo than three litres; 升级/升职 are not volumes
        _measure(
            "volume",
            _VOLUME_L,
            _alternation(["毫升", "ml", "mL", "ML", "升", "L"], {"升": "(?![级职学值温高])"}),
        ),
        _data_size(),
        _version(),
        _quantity(),
    ]
    return {pattern_type.name: pattern_type for pattern_type in types}


def find_patterns(text: str, types: list[PatternType]) -> Iterator[PatternMatch]:
    """Every validated match of every rule of `types` in (normalised) `text`."""
    for pattern_type in types:
        for rule in pattern_type.rules:
            rank = RANK_KEYWORD if rule.keyword else RANK_STRONG if rule.strong else RANK_PLAIN
            for match in rule.regex.finditer(text):
                if not pattern_type.valid(match):
                    continue
                start, end = match.span("v") if rule.keyword else match.span()
                yield PatternMatch(start, end, pattern_type.name, pattern_type.value(match), rank)
