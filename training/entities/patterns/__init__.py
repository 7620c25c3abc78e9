"""Regex-and-validator entity types, one module per family (the sections of types.yaml).

identifiers: check-digit identifiers    contacts: phones, e-mail, URLs, network addresses
documents:   document and keyword numbers    money: amounts, percentages, discounts, points
dates:       dates, times, durations     measures: age, weight, height, ... quantities
base:        Rule, PatternType, PatternMatch, the shared helpers and `find_patterns`

`build_pattern_types` returns every type by name; the registry (types.yaml) decides which are
used and in what order.
"""

from __future__ import annotations

from training.entities.patterns import contacts, dates, documents, identifiers, measures, money
from training.entities.patterns.base import (
    RANK_KEYWORD,
    RANK_PLAIN,
    RANK_STRONG,
    PatternMatch,
    PatternType,
    Rule,
    ValidFn,
    Value,
    ValueFn,
    core,
    find_patterns,
)

FAMILIES = (identifiers, contacts, documents, money, dates, measures)

__all__ = [
    "FAMILIES",
    "RANK_KEYWORD",
    "RANK_PLAIN",
    "RANK_STRONG",
    "PatternMatch",
    "PatternType",
    "Rule",
    "ValidFn",
    "Value",
    "ValueFn",
    "build_pattern_types",
    "core",
    "find_patterns",
]


def build_pattern_types() -> dict[str, PatternType]:
    """Every pattern type by name; the registry decides which are used and in what order."""
    types = [pattern_type for family in FAMILIES for pattern_type in family.pattern_types()]
    return {pattern_type.name: pattern_type for pattern_type in types}
