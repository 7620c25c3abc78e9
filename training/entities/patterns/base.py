"""What every pattern family shares: rules, types, matches, and the small value/validator helpers.

Every rule runs on the NFKC text (see textnorm), so full-width input needs no extra cases.
A rule whose regex has a group named `v` is keyword-anchored: the keyword (订单号, QQ, 邮编 ...)
must be present but only `v` is reported, and the keyword makes the match outrank bare formats
(see `extract.resolve`). `strong` marks bare formats specific enough (checksums, fixed prefixes)
to outrank any span they overlap.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from training.entities.numerals import parse_number, tidy

Value = str | int | float | None
ValueFn = Callable[[re.Match[str]], Value]
ValidFn = Callable[[re.Match[str]], bool]

RANK_KEYWORD, RANK_STRONG, RANK_PLAIN = 2, 1, 0
GAP = r"[\s:=#是为]{0,3}"  # between a keyword and its value: "QQ号：", "邮编是 ", "工单#"
ID_CHARS = r"[A-Za-z0-9][A-Za-z0-9-]"


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


def rule(pattern: str, flags: int = 0, strong: bool = False) -> Rule:
    return Rule(re.compile(pattern, flags), strong)


def named_group(match: re.Match[str], name: str) -> str | None:
    """A named group's text, or None when the rule has no such group or it did not take part."""
    return match.group(name) if name in match.re.groupindex else None


def core(match: re.Match[str]) -> str:
    """The reported text: the `v` group of keyword rules, else the whole match."""
    value = named_group(match, "v")
    return match.group(0) if value is None else value


def always(_: re.Match[str]) -> bool:
    return True


def no_value(_: re.Match[str]) -> Value:
    return None


def upper(match: re.Match[str]) -> str:
    """Identifier as written, upper-cased and without separators."""
    return re.sub(r"[\s·•-]", "", core(match)).upper()


def upper_keep_dashes(match: re.Match[str]) -> str:
    """Document numbers (GD-2024-0315) keep their dashes: they are part of the number."""
    return core(match).upper()


def digits_only(match: re.Match[str]) -> str:
    return re.sub(r"[^0-9]", "", core(match))


def has_digits(count: int) -> ValidFn:
    """Order/ticket numbers must contain digits: keyword + plain word is not an identifier."""
    return lambda match: sum(char.isdigit() for char in core(match)) >= count


def checked(check: Callable[[str], bool], clean: ValueFn = upper) -> ValidFn:
    """Validator that runs a checksum on the separator-free match."""
    return lambda match: check(str(clean(match)))


def number_of(match: re.Match[str], group: str = "n") -> float | None:
    token = named_group(match, group)
    return None if token is None else parse_number(token)


def numeric(match: re.Match[str]) -> bool:
    return number_of(match) is not None


def scaled(units: dict[str, float], digits: int = 6) -> ValueFn:
    """Normaliser for measures: number times the factor of its unit, in the type's base unit."""

    def value(match: re.Match[str]) -> Value:
        number = number_of(match)
        factor = units[match.group("u").lower()]
        return None if number is None else tidy(round(number * factor, digits))

    return value


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
