"""Dates, times and durations: absolute and relative dates (ISO 8601 values), clock times
(下午三点半 -> 15:30) and durations (ISO 8601 periods: 两个半小时 -> PT2.5H)."""

from __future__ import annotations

import re

from training.entities import validators
from training.entities.numerals import CN_DIGITS, NUMBER, format_number, parse_number
from training.entities.patterns.base import (
    PatternType,
    always,
    named_group,
    no_value,
    number_of,
    rule,
)


def pattern_types() -> list[PatternType]:
    """This family's types, in the order the registry lists them."""
    return [_date(), _relative_date(), _time(), _duration()]


_CN_YEAR = "[〇零一二三四五六七八九]{4}"

_MONTH = r"(?P<m>[0-9]{1,2}|十[一二]?|[一二三四五六七八九])"

_DAY = r"(?P<d>[0-9]{1,2}|[一二三]?十[一二三四五六七八九]?|[一二三四五六七八九])"


def _date_value(match: re.Match[str]) -> str | None:
    """ISO 8601: 2024-03-05, 2024-03 (no day) or --03-05 (no year), None if not a real date."""
    year_text = named_group(match, "y")
    year = None
    if year_text:
        year = int("".join(str(CN_DIGITS.get(char, char)) for char in year_text))
    month = parse_number(match.group("m"))
    day_text = named_group(match, "d")
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
        rule(rf"(?<![0-9])(?P<y>[0-9]{{4}}|{_CN_YEAR}) ?年 ?{_MONTH} ?月(?: ?{_DAY} ?[日号])?"),
        rule(
            r"(?<![0-9.])(?P<y>[0-9]{4})(?P<sep>[-/.])(?P<m>[0-9]{1,2})(?P=sep)(?P<d>[0-9]{1,2})"
            r"(?!\.?[0-9])"
        ),
        rule(rf"(?<![0-9年]){_MONTH} ?月 ?{_DAY} ?[日号]"),  # not the tail of a bad full date
    )
    return PatternType("date", rules, _date_value, lambda match: _date_value(match) is not None)


def _relative_date() -> PatternType:
    regex = (
        r"大后天|大前天|今天|明天|后天|昨天|前天|今日|明日|昨日|今晚|明早|明晚|"
        r"(?:上|下|这|本)个?(?:周|星期|礼拜)[一二三四五六日天末]?|"
        r"(?:上|下|这|本)个?月(?:初|底|末)?|(?:今|明|去|前|后)年(?:初|底)?"
    )
    return PatternType("relative_date", (rule(regex),), no_value, always)


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
        rule(
            r"(?<![0-9])(?<![0-9]:)(?P<H>[01]?[0-9]|2[0-3]):(?P<M>[0-5][0-9])(?::(?P<S>[0-5][0-9]))?"
            r"(?!:?[0-9])"
        ),
        rule(
            rf"(?:{period} ?)?(?<![0-9]){hour} ?[点时](?:(?P<q>半|一刻|三刻)|{fraction})?(?P<z>钟)?"
        ),
    )

    def value(match: re.Match[str]) -> str | None:
        if named_group(match, "H") is not None:
            seconds = f":{match.group('S')}" if match.group("S") else ""
            return f"{int(match.group('H')):02d}:{match.group('M')}{seconds}"
        clock = _clock(match)
        return None if clock is None else f"{clock[0]:02d}:{clock[1]:02d}"

    def valid(match: re.Match[str]) -> bool:
        if named_group(match, "H") is None and not any(
            match.group(g) for g in ("p", "q", "mi", "z")
        ):
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
        rule(rf"(?P<n>{NUMBER}) ?(?P<u>{units})(?P<half>半)?(?!级)"),
        rule(rf"(?P<h2>半)个?(?P<u>{units})"),
    )

    def amount(match: re.Match[str]) -> float | None:
        if named_group(match, "h2"):
            return 0.5
        number = number_of(match)
        return None if number is None else number + (0.5 if match.group("half") else 0.0)

    def value(match: re.Match[str]) -> str:
        unit, is_time = _DURATION_UNITS[match.group("u")]
        return f"P{'T' if is_time else ''}{format_number(amount(match) or 0.0)}{unit}"

    def valid(match: re.Match[str]) -> bool:
        number = amount(match)
        return number is not None and not (match.group("u") == "年" and number >= 1000)

    return PatternType("duration", rules, value, valid)
