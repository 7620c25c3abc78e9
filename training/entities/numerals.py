"""Numbers as Chinese customers write them: 12.5, 12,500, 3万, 三千, 壹仟贰佰, 二〇二四, 零点五.

Amounts, percentages, ages and measures all share these regex fragments and one parser, so a
form accepted by one type is accepted by every type.
"""

from __future__ import annotations

import re

CN_DIGITS = dict(
    zip(
        "零〇一壹二贰两三叁四肆五伍六陆七柒八捌九玖",
        [0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9],
        strict=True,
    )
)
CN_SMALL_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
CN_LARGE_UNITS = {"万": 10_000, "萬": 10_000, "亿": 100_000_000}
_UNITS = {**CN_SMALL_UNITS, **CN_LARGE_UNITS}

_DIGIT_CHARS = "".join(CN_DIGITS)
_ALL_CN = _DIGIT_CHARS + "".join(_UNITS)
# A Chinese numeral must start with a digit or 十: "百家"/"千万别" are words, not numbers.
CN_NUMBER = rf"[{_DIGIT_CHARS}十拾][{_ALL_CN}]*(?:点[{_DIGIT_CHARS}]+)?"
ARABIC_NUMBER = r"(?<![0-9.])[0-9]+(?:,[0-9]{3})*(?:\.[0-9]+)?(?:[十百千万亿]+)?"
NUMBER = rf"(?:{ARABIC_NUMBER}|{CN_NUMBER})"

_ARABIC_RE = re.compile(r"([0-9][0-9,]*(?:\.[0-9]+)?)([十百千万亿]*)")


def _cn_integer(chars: str) -> int | None:
    """Value of a numeral with units (三万五千 -> 35000) or of a digit string (二〇二四)."""
    if not chars:
        return None
    if all(char in CN_DIGITS for char in chars):
        return int("".join(str(CN_DIGITS[char]) for char in chars))
    total = section = number = 0
    for char in chars:
        if char in CN_DIGITS:
            number = CN_DIGITS[char]
        elif char in CN_SMALL_UNITS:
            unit = CN_SMALL_UNITS[char]
            section += (number or 1) * unit  # 十五, 百 alone: an implied 一
            number = 0
        elif char == "亿":
            total = (total + section + number) * CN_LARGE_UNITS[char]
            section = number = 0
        elif char in CN_LARGE_UNITS:
            total += (section + number) * CN_LARGE_UNITS[char]
            section = number = 0
        else:
            return None
    return total + section + number


def parse_number(token: str) -> float | None:
    """Value of one NUMBER match, or None when the token is not a number we understand."""
    token = token.strip()
    arabic = _ARABIC_RE.fullmatch(token)
    if arabic:
        value = float(arabic.group(1).replace(",", ""))
        for unit in arabic.group(2):
            value *= _UNITS[unit]
        return value
    whole, _, decimals = token.partition("点")
    integer = _cn_integer(whole)
    if integer is None:
        return None
    if not decimals:
        return float(integer)
    if any(char not in CN_DIGITS for char in decimals):
        return None
    return float(f"{integer}.{''.join(str(CN_DIGITS[char]) for char in decimals)}")


def tidy(value: float) -> int | float:
    """Integral floats as ints (3000.0 -> 3000) so normalised values read naturally."""
    rounded = round(value, 6)
    return int(rounded) if rounded == int(rounded) else rounded


def format_number(value: float) -> str:
    """Shortest decimal text for a number: 5.0 -> '5', 0.50 -> '0.5'."""
    return f"{tidy(value)}"
