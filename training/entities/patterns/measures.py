"""People and physical measures: age, weight, height, area, temperature, distance, volume,
data size, software versions and counted quantities (3件, 2箱), each normalised to a base unit."""

from __future__ import annotations

import re
from collections.abc import Iterable

from training.entities.numerals import NUMBER, parse_number, tidy
from training.entities.patterns.base import (
    GAP,
    PatternType,
    Value,
    always,
    number_of,
    numeric,
    rule,
    scaled,
)


def pattern_types() -> list[PatternType]:
    """This family's types, in the order the registry lists them."""
    return [
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


def _age() -> PatternType:
    regex = rf"(?P<n>{NUMBER}) ?周?岁(?P<half>半)?"

    def value(match: re.Match[str]) -> Value:
        return tidy((number_of(match) or 0.0) + (0.5 if match.group("half") else 0.0))

    return PatternType("age", (rule(regex),), value, lambda match: (number_of(match) or 999) <= 150)


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
    return PatternType(name, (rule(regex),), scaled(units, digits), numeric)


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
        return tidy(round((number_of(match) or 0.0) * _HEIGHT_CM[match.group("u").lower()], 2))

    return PatternType("height", (rule(regex, re.I),), value, always)


def _temperature() -> PatternType:
    units = r"°C|°F|摄氏度|华氏度"
    rules = (
        rule(rf"(?P<neg>零下|负|-)?(?P<n>{NUMBER}) ?(?P<u>{units})"),
        rule(
            rf"(?:体温|气温|温度|室温|水温|发烧|烧到|高烧)[\s:是有了到约]{{0,3}}"
            rf"(?P<v>(?P<neg>零下|负)?(?P<n>{NUMBER}) ?(?P<u>度))"
        ),
    )

    def value(match: re.Match[str]) -> Value:
        degrees = (number_of(match) or 0.0) * (-1 if match.group("neg") else 1)
        if match.group("u") in ("°F", "华氏度"):
            degrees = (degrees - 32) * 5 / 9
        return tidy(round(degrees, 1))

    return PatternType("temperature", rules, value, numeric)


def _data_size() -> PatternType:
    regex = rf"(?P<n>{NUMBER}) ?(?P<u>TB|GB|MB|KB)(?![A-Za-z0-9])"
    return PatternType("data_size", (rule(regex, re.I),), scaled(_DATA_GB), numeric)


def _version() -> PatternType:
    dotted = r"[0-9]+(?:\.[0-9]+){1,3}"
    rules = (
        rule(rf"(?<![A-Za-z0-9.])[vV](?P<ver>{dotted})(?!\.?[0-9])"),
        rule(r"(?<![A-Za-z0-9.])(?P<ver>[0-9]+\.[0-9]+\.[0-9]+(?:\.[0-9]+)?)(?!\.?[0-9])"),
        rule(rf"(?:版本号?|version|ver\.?){GAP}(?P<v>[vV]?(?P<ver>{dotted}))(?!\.?[0-9])", re.I),
    )
    return PatternType("version", rules, lambda match: match.group("ver"), always)


_MEASURE_WORDS = "个件台张本瓶箱盒包支双套份条只辆部把袋罐杯片颗粒位名间栋笔单桶顶副枚"


def _quantity() -> PatternType:
    regex = rf"(?P<n>{NUMBER}) ?(?P<u>[{_MEASURE_WORDS}]|块(?!钱))"
    return PatternType(
        "quantity", (rule(regex),), lambda match: tidy(number_of(match) or 0.0), numeric
    )
