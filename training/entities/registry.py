"""The entity-type registry: `types.yaml` is the one list of what `extract_entities` can return.

Each entry carries a worked example so the registry doubles as the test set: a type whose
example does not extract is a broken type, whatever its source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

Source = Literal["model", "pattern", "gazetteer"]
SOURCES: tuple[Source, ...] = ("model", "pattern", "gazetteer")
PACKAGE_DIR = Path(__file__).resolve().parent
REGISTRY_PATH = PACKAGE_DIR / "types.yaml"
_SNAKE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
_MISSING = object()


@dataclass(frozen=True, slots=True)
class EntityType:
    """One registry entry. `normalised` is None when the type has no normalised form."""

    name: str
    source: Source
    description: str
    example: str
    expected: str
    normalised: Any = None


def _parse_entry(raw: Any, position: int) -> EntityType:
    """Validate one YAML mapping; errors name the entry so a bad edit is easy to find."""
    if not isinstance(raw, dict):
        raise ValueError(f"types.yaml entry {position} is not a mapping")
    allowed = {"name", "source", "description", "example", "expected", "normalised"}
    if unknown := set(raw) - allowed:
        raise ValueError(f"types.yaml entry {position}: unknown keys {sorted(unknown)}")
    name = raw.get("name")
    if not isinstance(name, str) or not _SNAKE.fullmatch(name):
        raise ValueError(f"types.yaml entry {position}: name {name!r} is not snake_case")
    if raw.get("source") not in SOURCES:
        raise ValueError(f"{name}: source must be one of {SOURCES}, got {raw.get('source')!r}")
    for key in ("description", "example", "expected"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise ValueError(f"{name}: {key} must be a non-empty string")
    if raw["expected"] not in raw["example"]:
        raise ValueError(f"{name}: expected {raw['expected']!r} is not in its example")
    normalised = raw.get("normalised", _MISSING)
    if normalised is None:
        raise ValueError(f"{name}: normalised is null; omit the key instead")
    return EntityType(
        name=name,
        source=raw["source"],
        description=raw["description"],
        example=raw["example"],
        expected=raw["expected"],
        normalised=None if normalised is _MISSING else normalised,
    )


def read_registry(path: Path) -> tuple[EntityType, ...]:
    """Parse and validate a registry file (uncached; `load_registry` caches the packaged one)."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    entries = document.get("types") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a top-level 'types' list")
    types = tuple(_parse_entry(raw, index) for index, raw in enumerate(entries))
    names = [entity_type.name for entity_type in types]
    if duplicates := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(f"{path}: duplicate type names {duplicates}")
    return types


@cache
def load_registry() -> tuple[EntityType, ...]:
    """The packaged registry, in file order (file order also breaks extraction ties)."""
    return read_registry(REGISTRY_PATH)
