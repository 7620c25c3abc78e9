"""Check digits of the identifiers we extract, so random digit runs are not reported as IDs.

Each function takes the candidate as normalised text (no separators) and returns whether its
checksum (or structure, where there is no checksum) is valid.
"""

from __future__ import annotations

import datetime as dt
import string

# GB 2260 province-level codes: the first two digits of a resident ID.
PROVINCE_CODES = frozenset(
    [
        "11",
        "12",
        "13",
        "14",
        "15",
        "21",
        "22",
        "23",
        "31",
        "32",
        "33",
        "34",
        "35",
        "36",
        "37",
        "41",
        "42",
        "43",
        "44",
        "45",
        "46",
        "50",
        "51",
        "52",
        "53",
        "54",
        "61",
        "62",
        "63",
        "64",
        "65",
        "71",
        "81",
        "82",
        "83",
        "91",
    ]
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_VIN_VALUES = dict(
    zip(
        "ABCDEFGHJKLMNPRSTUVWXYZ",
        (1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7, 8, 9),
        strict=True,
    )
)


def is_real_date(year: int, month: int, day: int) -> bool:
    """True when the calendar has this day (rejects 2023-02-29, 2024-13-01)."""
    try:
        dt.date(year, month, day)
    except ValueError:
        return False
    return True


def resident_id_18(number: str) -> bool:
    """18-digit resident ID: province code, birth date and the ISO 7064 MOD 11-2 check digit."""
    if len(number) != 18 or number[:2] not in PROVINCE_CODES:
        return False
    if not is_real_date(int(number[6:10]), int(number[10:12]), int(number[12:14])):
        return False
    total = sum(int(digit) * weight for digit, weight in zip(number[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == number[17].upper()


def resident_id_15(number: str) -> bool:
    """15-digit (pre-1999) resident ID: no check digit, so province code and 19YYMMDD birth date."""
    if len(number) != 15 or number[:2] not in PROVINCE_CODES:
        return False
    return is_real_date(1900 + int(number[6:8]), int(number[8:10]), int(number[10:12]))


def luhn(number: str) -> bool:
    """Luhn (mod 10) check used by bank cards and IMEIs."""
    if not number.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def credit_code(code: str) -> bool:
    """Unified social credit code (GB 32100-2015): 18 chars, weighted mod-31 check character."""
    code = code.upper()
    if len(code) != 18 or any(char not in _USCC_CHARS for char in code):
        return False
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(code[:17], _USCC_WEIGHTS, strict=True))
    return _USCC_CHARS[(31 - total % 31) % 31] == code[17]


def iban(code: str) -> bool:
    """IBAN (ISO 13616): move the first four characters to the end, letters to 10..35, mod 97."""
    code = code.replace(" ", "").upper()
    if not 15 <= len(code) <= 34 or not code.isalnum():
        return False
    rearranged = code[4:] + code[:4]
    digits = "".join(
        str(string.digits.index(c) if c.isdigit() else ord(c) - 55) for c in rearranged
    )
    return int(digits) % 97 == 1


def vin(code: str) -> bool:
    """Vehicle identification number (ISO 3779 / GB 16735): check character in position 9."""
    code = code.upper()
    if len(code) != 17:
        return False
    total = 0
    for char, weight in zip(code, _VIN_WEIGHTS, strict=True):
        if char.isdigit():
            total += int(char) * weight
        elif char in _VIN_VALUES:
            total += _VIN_VALUES[char] * weight
        else:
            return False
    check = total % 11
    return code[8] == ("X" if check == 10 else str(check))
