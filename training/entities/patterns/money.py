"""Money, ratios and loyalty: amounts per currency, percentages, discounts (八折, 85折) and
loyalty points."""

from __future__ import annotations

import re

from training.entities.numerals import CN_DIGITS, NUMBER, format_number, parse_number, tidy
from training.entities.patterns.base import PatternType, always, number_of, numeric, rule

CNY, USD = r"¥|RMB|CNY|人民币", r"US\$|USD|\$"


def pattern_types() -> list[PatternType]:
    """This family's types, in the order the registry lists them."""
    return [
        _amount("amount_cny", CNY, r"元|块钱|圆|人民币"),
        _amount("amount_usd", USD, r"美元|美金|USD"),
        _amount("amount_eur", r"€|EUR", r"欧元|EUR"),
        _amount("amount_hkd", r"HK\$|HKD|港币", r"港币|港元|HKD"),
        _amount("amount_jpy", r"JPY|円", r"日元|日币|円|JPY"),
        _amount("amount_gbp", r"£|GBP", r"英镑|GBP"),
        _percentage(),
        _discount(),
        _loyalty_points(),
    ]


def _amount(name: str, prefixes: str, suffixes: str) -> PatternType:
    """Money in one currency: prefix form (¥12.5, US$3) or suffix form (12.50元, 3万美元)."""
    rules = (
        rule(rf"(?:{prefixes}) ?(?P<n>{NUMBER})(?: ?(?:{suffixes}))?整?", re.I),
        rule(rf"(?P<n>{NUMBER}) ?(?:{suffixes})整?", re.I),
    )
    return PatternType(name, rules, lambda match: tidy(number_of(match) or 0.0), numeric)


def _percentage() -> PatternType:
    rules = (
        rule(rf"(?P<n>{NUMBER}) ?%"),
        rule(rf"百分之(?P<n>{NUMBER})"),
        rule(rf"千分之(?P<n>{NUMBER})"),
    )

    def value(match: re.Match[str]) -> str:
        number = number_of(match) or 0.0
        return f"{format_number(number / 10 if match.group(0).startswith('千') else number)}%"

    return PatternType("percentage", rules, value, numeric)


def _discount() -> PatternType:
    digits = "一二三四五六七八九"
    number = rf"[0-9]{{2}}|[0-9](?:\.[0-9])?|[{digits}]{{1,2}}|[{digits}]点[{digits}]"
    regex = rf"(?<![0-9.])(?P<n>{number})折(?![扣叠旧合算])"

    def value(match: re.Match[str]) -> float:
        token = match.group("n")
        if len(token) == 2 and "." not in token and "点" not in token:
            return round(float("".join(str(CN_DIGITS.get(c, c)) for c in token)) / 100, 4)
        return round((parse_number(token) or 0.0) / 10, 4)

    return PatternType("discount", (rule(regex),), value, always)


def _loyalty_points() -> PatternType:
    regex = rf"(?P<n>{NUMBER}) ?个?积分"
    return PatternType(
        "loyalty_points", (rule(regex),), lambda match: tidy(number_of(match) or 0.0), numeric
    )
