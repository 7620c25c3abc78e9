"""Identifiers with check digits: resident ID (18 and 15 digits), unified social credit code,
bank card (Luhn), IBAN, VIN, IMEI. A checksum vetoes look-alike digit runs."""

from __future__ import annotations

import re

from training.entities import validators
from training.entities.patterns.base import (
    GAP,
    PatternType,
    checked,
    core,
    digits_only,
    rule,
    upper,
)


def pattern_types() -> list[PatternType]:
    """This family's types, in the order the registry lists them."""
    return [
        _resident_id(),
        _resident_id_15(),
        _credit_code(),
        _bank_card(),
        _iban(),
        _vin(),
        _imei(),
    ]


def _resident_id() -> PatternType:
    regex = r"(?<![0-9A-Za-z])[1-9][0-9]{5} ?[0-9]{8} ?[0-9]{3}[0-9Xx](?![0-9A-Za-z])"
    return PatternType(
        "resident_id", (rule(regex, strong=True),), upper, checked(validators.resident_id_18)
    )


def _resident_id_15() -> PatternType:
    regex = r"(?<![0-9A-Za-z])[1-9][0-9]{14}(?![0-9A-Za-z])"
    return PatternType("resident_id_15", (rule(regex),), upper, checked(validators.resident_id_15))


def _credit_code() -> PatternType:
    chars = "[0-9A-HJ-NPQRTUWXY]"
    regex = rf"(?<![0-9A-Za-z]){chars}{{2}}[0-9]{{6}}{chars}{{10}}(?![0-9A-Za-z])"
    return PatternType(
        "credit_code", (rule(regex, re.I, strong=True),), upper, checked(validators.credit_code)
    )


def _bank_card() -> PatternType:
    regex = r"(?<![0-9])[3-6][0-9]{3}(?:[ -]?[0-9]){12,15}(?![0-9])"
    return PatternType(
        "bank_card", (rule(regex, strong=True),), digits_only, checked(validators.luhn, digits_only)
    )


def _iban() -> PatternType:
    groups = r"(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?"
    regex = rf"(?<![A-Za-z0-9])[A-Z]{{2}}[0-9]{{2}}{groups}(?![A-Za-z0-9])"
    return PatternType("iban", (rule(regex, strong=True),), upper, checked(validators.iban))


def _vin() -> PatternType:
    body = r"[A-HJ-NPR-Z0-9]{17}"
    rules = (
        rule(rf"(?<![A-Za-z0-9]){body}(?![A-Za-z0-9])", strong=True),
        rule(rf"(?:车架号|VIN码?|车辆识别(?:代号|码)){GAP}(?P<v>{body})(?![A-Za-z0-9])", re.I),
    )

    def valid(match: re.Match[str]) -> bool:
        code = core(match).upper()
        return not code.isdigit() and not code.isalpha() and validators.vin(code)

    return PatternType("vin", rules, upper, valid)


def _imei() -> PatternType:
    regex = rf"(?:IMEI|串号|设备识别码)(?:号|码)?{GAP}(?P<v>[0-9]{{15}})(?![0-9])"
    return PatternType(
        "imei", (rule(regex, re.I),), digits_only, checked(validators.luhn, digits_only)
    )
