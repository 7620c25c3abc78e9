"""`extract_entities`: pattern, gazetteer and model spans merged into one non-overlapping list.

Overlap resolution is a single total order, applied greedily (best candidate first, every
candidate that overlaps an accepted one is dropped), so the result never depends on the order
in which candidates were found:

1. rank: keyword-anchored pattern (QQ号 123..., 订单号 ...) > strong bare pattern (checksummed
   ID, bank card, phone, e-mail ...) > everything else. A keyword or a check digit is better
   evidence than any span length, and a learned span cutting through a phone number is a
   boundary error of the model, not a reason to drop the number.
2. longer span (in original characters): a model `address` 北京市海淀区中关村大街27号 beats the
   gazetteer city 北京市 inside it; 一年级 (grade) beats the duration 一年.
3. source: pattern > gazetteer > model, so for the same span a gazetteer's specific type (bank)
   replaces the model's generic one (organization).
4. registry order (earlier in types.yaml wins), then the earlier start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from training.entities.gazetteer import GAZETTEER_DIR, Gazetteer
from training.entities.patterns import RANK_PLAIN, Value, build_pattern_types, find_patterns
from training.entities.registry import EntityType, Source, load_registry
from training.entities.textnorm import normalise

ModelSpan = tuple[int, int, str]
_SOURCE_ORDER: dict[str, int] = {"pattern": 2, "gazetteer": 1, "model": 0}


@dataclass(frozen=True, slots=True)
class Entity:
    """An extracted entity; `start`/`end` (exclusive) index the caller's text, not its NFKC form."""

    start: int
    end: int
    text: str
    type: str
    source: Source
    value: Value = None


@dataclass(frozen=True, slots=True)
class _Candidate:
    start: int
    end: int
    type: str
    source: Source
    value: Value
    rank: int


class Extractor:
    """Compiled patterns and gazetteer for one registry; build once, call `extract` many times."""

    def __init__(self, registry: Sequence[EntityType]) -> None:
        self.order = {entity_type.name: index for index, entity_type in enumerate(registry)}
        by_source = {
            source: [t.name for t in registry if t.source == source] for source in _SOURCE_ORDER
        }
        implemented = build_pattern_types()
        _same_names("pattern", by_source["pattern"], implemented)
        _same_names(
            "gazetteer", by_source["gazetteer"], [path.stem for path in GAZETTEER_DIR.glob("*.txt")]
        )
        self.patterns = [implemented[name] for name in by_source["pattern"]]
        self.gazetteer = Gazetteer.from_files(by_source["gazetteer"])
        self.model_types = frozenset(by_source["model"])

    def extract(self, text: str, model_spans: Iterable[ModelSpan] | None = None) -> list[Entity]:
        """All entities of `text`, non-overlapping, sorted by position."""
        candidates = self._model_candidates(text, model_spans or ())
        if text:
            candidates.extend(self._matched_candidates(text))
        chosen = resolve(candidates, self.order)
        return [
            Entity(c.start, c.end, text[c.start : c.end], c.type, c.source, c.value) for c in chosen
        ]

    def _matched_candidates(self, text: str) -> list[_Candidate]:
        """Pattern and gazetteer matches on the NFKC text, mapped back to original offsets."""
        normalised = normalise(text)
        found: list[_Candidate] = []
        for match in find_patterns(normalised.text, self.patterns):
            start, end = normalised.span(match.start, match.end)
            found.append(_Candidate(start, end, match.type, "pattern", match.value, match.rank))
        for hit in self.gazetteer.scan(normalised.text):
            start, end = normalised.span(hit.start, hit.end)
            found.append(_Candidate(start, end, hit.type, "gazetteer", hit.canonical, RANK_PLAIN))
        return found

    def _model_candidates(self, text: str, spans: Iterable[ModelSpan]) -> list[_Candidate]:
        """Check the model's spans: a span outside the text or of an unknown type is a bug."""
        found: list[_Candidate] = []
        for start, end, entity_type in spans:
            if not (
                isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)
            ):
                raise ValueError(f"model span ({start}, {end}) is outside text of {len(text)}")
            if entity_type not in self.model_types:
                raise ValueError(f"model span type {entity_type!r} is not a registered model type")
            found.append(_Candidate(start, end, entity_type, "model", None, RANK_PLAIN))
        return found


def _same_names(source: str, registered: list[str], available: Iterable[str]) -> None:
    """The registry and the implementation must list the same types: no silent drift."""
    missing, extra = set(registered) - set(available), set(available) - set(registered)
    if missing or extra:
        raise ValueError(
            f"{source} types out of sync with types.yaml: "
            f"unimplemented {sorted(missing)}, unregistered {sorted(extra)}"
        )


def resolve(candidates: Iterable[_Candidate], order: dict[str, int]) -> list[_Candidate]:
    """Greedy non-overlapping selection by the total order in the module docstring."""

    def priority(c: _Candidate) -> tuple[int, int, int, int, int]:
        return (c.rank, c.end - c.start, _SOURCE_ORDER[c.source], -order[c.type], -c.start)

    ranked = sorted(candidates, key=priority, reverse=True)
    taken = bytearray(max((c.end for c in ranked), default=0))  # 1 = character already claimed
    chosen: list[_Candidate] = []
    for candidate in ranked:
        if not any(taken[candidate.start : candidate.end]):
            taken[candidate.start : candidate.end] = b"\x01" * (candidate.end - candidate.start)
            chosen.append(candidate)
    return sorted(chosen, key=lambda c: (c.start, c.end))


@cache
def default_extractor() -> Extractor:
    """The extractor for the packaged registry, built on first use."""
    return Extractor(load_registry())


def extract_entities(text: str, model_spans: Iterable[ModelSpan] | None = None) -> list[Entity]:
    """Entities in `text`: patterns and gazetteers, merged with the NER model's spans if given.

    `model_spans` are (start, end_exclusive, type) in `text`'s own offsets, with type one of the
    registry's `model` types (the CLUENER labels); the model itself lives outside this package.
    """
    return default_extractor().extract(text, model_spans)
