"""Contact points and network addresses: phones, service hotlines, e-mail, URLs, IP and MAC
addresses, QQ numbers and WeChat ids."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from training.entities.patterns.base import (
    GAP,
    PatternType,
    always,
    core,
    digits_only,
    rule,
)


def pattern_types() -> list[PatternType]:
    """This family's types, in the order the registry lists them."""
    return [
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
    ]


def _mobile_phone() -> PatternType:
    regex = r"(?<![0-9])(?:\(?(?:\+|00)?86\)?[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}(?![0-9])"
    return PatternType(
        "mobile_phone", (rule(regex, strong=True),), lambda match: digits_only(match)[-11:], always
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

    return PatternType("landline_phone", (rule(regex, strong=True),), value, always)


def _service_hotline() -> PatternType:
    known = (
        "95588|95533|95555|95566|95599|95559|95508|95568|95595|95528|95558|95561|95577|"
        "95580|95338|10086|10010|12315|12306|12366"
    )
    rules = (
        rule(r"(?<![0-9])[48]00[ -]?[0-9]{3}[ -]?[0-9]{4}(?![0-9])", strong=True),
        rule(rf"(?<![0-9A-Za-z])(?:{known})(?![0-9])", strong=True),
    )
    return PatternType("service_hotline", rules, digits_only, always)


def _email() -> PatternType:
    regex = (
        r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
        r"\.[A-Za-z]{2,}(?![A-Za-z0-9-])"
    )
    return PatternType(
        "email", (rule(regex, strong=True),), lambda match: match.group(0).lower(), always
    )


def _url() -> PatternType:
    tail = r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*[A-Za-z0-9\-_~/#=&%]"
    domain = r"(?:[A-Za-z0-9-]+\.)+(?:com\.cn|gov\.cn|edu\.cn|com|cn|net|org|io|top|xyz)"
    rules = (
        rule(rf"(?:https?://|www\.){tail}", re.I, strong=True),
        rule(rf"(?<![A-Za-z0-9@.\-/]){domain}(?:/{tail})?(?![A-Za-z0-9])", re.I, strong=True),
    )
    return PatternType("url", rules, lambda match: match.group(0), always)


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
        (rule(regex, strong=True),),
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
        (rule(regex, strong=True),),
        lambda match: str(ipaddress.IPv6Address(match.group(0))),
        lambda match: _ip(6)(match.group(0)),
    )


def _mac_address() -> PatternType:
    pair = "[0-9A-Fa-f]{2}"
    regex = rf"(?<![0-9A-Fa-f:-]){pair}([:-]){pair}(?:\1{pair}){{4}}(?![0-9A-Fa-f:-])"
    return PatternType(
        "mac_address",
        (rule(regex, strong=True),),
        lambda match: match.group(0).upper().replace("-", ":"),
        always,
    )


def _qq_number() -> PatternType:
    regex = rf"(?:QQ|扣扣)(?:号码?)?{GAP}(?P<v>[1-9][0-9]{{4,11}})(?![0-9])"
    return PatternType("qq_number", (rule(regex, re.I),), digits_only, always)


def _wechat_id() -> PatternType:
    chinese = rf"(?:微信号?|v信|薇信|威信){GAP}"
    latin = r"(?<![A-Za-z0-9_])(?:wechat|weixin|wx|vx)[\s:=]{1,3}"  # "wxid_..." is not wx + id
    keyword = f"(?:{chinese}|{latin})"
    regex = rf"{keyword}(?P<v>[A-Za-z][-_A-Za-z0-9]{{5,19}})(?![-_A-Za-z0-9])"
    return PatternType("wechat_id", (rule(regex, re.I),), core, always)
